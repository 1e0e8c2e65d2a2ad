"""Pod Security Standards "restricted" profile (baseline included) as a pure check of a pod spec.

Follows the rules of https://kubernetes.io/docs/concepts/security/pod-security-standards/
(latest version of the profile); returns the violations, empty when the pod passes.
"""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    named: list[tuple[str, dict[str, Any]]] = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        named += [(f"{field}[{c.get('name')}]", c) for c in spec.get(field) or []]
    return named


def _seccomp_ok(profile: dict[str, Any] | None) -> bool | None:
    if not profile:
        return None
    return profile.get("type") in ("RuntimeDefault", "Localhost")


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Violations of the "restricted" profile by a PodSpec (empty list: compliant)."""
    problems: list[str] = []
    pod_sc: dict[str, Any] = spec.get("securityContext") or {}

    # Baseline.
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            problems.append(f"spec.{host} must not be true")
    if pod_sc.get("windowsOptions", {}).get("hostProcess"):
        problems.append("spec.securityContext.windowsOptions.hostProcess must not be true")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')} uses {sorted(kinds - ALLOWED_VOLUME_TYPES)}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl.get('name')} is not allowed")
    if pod_sc.get("seLinuxOptions", {}).get("type", "") not in SELINUX_TYPES:
        problems.append("spec.securityContext.seLinuxOptions.type is not allowed")
    if _seccomp_ok(pod_sc.get("seccompProfile")) is False:
        problems.append("spec.securityContext.seccompProfile.type must be RuntimeDefault or Localhost")
    if pod_sc.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser must not be 0")
    if pod_sc.get("appArmorProfile", {}).get("type") == "Unconfined":
        problems.append("spec.securityContext.appArmorProfile must not be Unconfined")

    pod_non_root = pod_sc.get("runAsNonRoot")
    pod_seccomp = _seccomp_ok(pod_sc.get("seccompProfile"))
    for where, container in _containers(spec):
        sc: dict[str, Any] = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{where}: privileged must not be true")
        caps = sc.get("capabilities") or {}
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: capabilities.add may only contain NET_BIND_SERVICE")
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{where}: capabilities.drop must contain ALL")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort must not be set")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount must be Default")
        if sc.get("seLinuxOptions", {}).get("type", "") not in SELINUX_TYPES:
            problems.append(f"{where}: seLinuxOptions.type is not allowed")
        if sc.get("appArmorProfile", {}).get("type") == "Unconfined":
            problems.append(f"{where}: appArmorProfile must not be Unconfined")
        # Restricted.
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            problems.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser must not be 0")
        seccomp = _seccomp_ok(sc.get("seccompProfile"))
        if seccomp is False or (seccomp is None and not pod_seccomp):
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
    return problems
