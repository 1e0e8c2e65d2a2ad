"""The container's environment: env and envFrom, secrets, config maps, field refs, mount paths
rewritten to per-pod local folders, and the service-account kubeconfig."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

VENV_BIN = Path(sys.executable).parent


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown stay."""

    def swap(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", swap, text)


def field_ref(pod: dict[str, Any], path: str) -> str | None:
    """The value of a downward-API fieldRef (None: not modelled)."""
    meta = pod["metadata"]
    simple: dict[str, str | None] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": (pod.get("status") or {}).get("podIP", ""),
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    return None


def remap(value: str, mounts: dict[str, Path]) -> str:
    """Rewrite a value that starts with a container mount path to the pod's local folder."""
    for container_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if container_path.startswith("/") and (value == container_path or value.startswith(container_path + "/")):
            return str(local) + value[len(container_path) :]
    return value


class PodEnvironment:
    """Mixed into TestNode: reads secrets, config maps and tokens through ``core``."""

    core: client.CoreV1Api
    workdir: Path

    def _environment(self, pod: dict[str, Any], container: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
        meta = pod["metadata"]
        namespace = meta["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                data = self._secret(namespace, source["secretRef"]["name"])
            else:
                data = self._config_map(namespace, source["configMapRef"]["name"])
            env.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand(item.get("value", ""), env)
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = self._secret(namespace, ref["name"]).get(ref["key"])
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                value = self._config_map(namespace, ref["name"]).get(ref["key"])
            elif "fieldRef" in source:
                value = field_ref(pod, source["fieldRef"]["fieldPath"])
            else:  # resourceFieldRef: not modelled
                value = ""
            if value is not None:
                env[name] = value
        # Container paths of volume mounts live in per-pod local folders here.
        env = {k: remap(v, mounts) for k, v in env.items()}
        if pod["spec"].get("automountServiceAccountToken", True):
            # A kubelet mounts a bound service-account token; here the process gets a
            # kubeconfig with that token (in-cluster loaders read fixed paths).
            env.setdefault("KUBECONFIG", str(self._service_account_kubeconfig(pod, mounts["__home__"])))
        base = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(mounts.get("__home__", self.workdir)),
            "HOSTNAME": meta["name"],
            "LANG": "C.UTF-8",
        }
        return {**base, **env}

    def _service_account_kubeconfig(self, pod: dict[str, Any], directory: Path) -> Path:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        bound = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}
        request = {"spec": {"audiences": [], "expirationSeconds": 3600, "boundObjectRef": bound}}
        token = self.core.create_namespaced_service_account_token(account, meta["namespace"], request).status.token
        configuration = self.core.api_client.configuration
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "in-cluster",
                    "cluster": {"server": configuration.host, "certificate-authority": configuration.ssl_ca_cert},
                }
            ],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "in-cluster",
                    "context": {"cluster": "in-cluster", "user": account, "namespace": meta["namespace"]},
                }
            ],
            "current-context": "in-cluster",
        }
        path = directory / "serviceaccount.kubeconfig"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def _config_map(self, namespace: str, name: str) -> dict[str, str]:
        return dict(self.core.read_namespaced_config_map(name, namespace).data or {})
