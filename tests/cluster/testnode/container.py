"""A pod's container as a `podman run` command line: the image's root filesystem, the pod's
user, groups, capabilities and read-only root, its volume mounts and its environment.

Pure functions; process.py runs the command. What differs from a kubelet with a CRI runtime
(documented limits): every pod shares the node's network (there is no CNI here, and the API
server and the S3 server listen on the node's loopback), resource limits are not enforced,
and images are never pulled (no registry is reachable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


class Runtime(StrEnum):
    """How the test node runs a pod's container (MULTITALK_TEST_NODE_RUNTIME)."""

    AUTO = "auto"  # from the image when it is in local storage, else as a local process
    IMAGE = "image"  # from the image, or the pod waits with ErrImageNeverPull
    PROCESS = "process"  # the container's command from this virtualenv (quick runs, no images)


@dataclass(frozen=True)
class Mount:
    host: Path
    read_only: bool = False


def security(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The container's securityContext over the pod's (the fields both may set)."""
    merged = {
        k: v
        for k, v in (pod["spec"].get("securityContext") or {}).items()
        if k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
    }
    return {**merged, **(container.get("securityContext") or {})}


def refusal(pod: dict[str, Any], container: dict[str, Any], image_user: str) -> str | None:
    """Why a kubelet would not start this container (CreateContainerConfigError), if it would not."""
    context = security(pod, container)
    if not context.get("runAsNonRoot"):
        return None
    uid = context.get("runAsUser")
    if uid is None:
        user = image_user.split(":", 1)[0]
        if not user.isdigit():
            shown = user or "root"
            return (
                f"container has runAsNonRoot and image has non-numeric user ({shown}), cannot verify user is non-root"
            )
        uid = int(user)
    if int(uid) == 0:
        return "container has runAsNonRoot and image will run as root"
    return None


def podman_run_args(
    pod: dict[str, Any],
    container: dict[str, Any],
    *,
    image: str,
    name: str,
    mounts: dict[str, Mount],
    env_names: list[str],
    env_values: dict[str, str],
) -> list[str]:
    """Options and arguments after `podman run` for this container.

    ``mounts`` maps container paths to host paths; ``env_names`` are passed by name (podman
    reads their values from its own environment, so secrets stay off the command line),
    ``env_values`` inline.
    """
    context = security(pod, container)
    args = ["--rm", "--name", name, "--pull", "never", "--network", "host", "--hostname", pod["metadata"]["name"]]
    if "runAsUser" in context:
        user = str(context["runAsUser"])
        args += ["--user", f"{user}:{context['runAsGroup']}" if "runAsGroup" in context else user]
    pod_context = pod["spec"].get("securityContext") or {}
    for group in [pod_context.get("fsGroup"), *(pod_context.get("supplementalGroups") or [])]:
        if group is not None:
            args += ["--group-add", str(group)]
    if context.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]  # only the mounts are writable, as in a pod
    capabilities = context.get("capabilities") or {}
    args += [f"--cap-drop={cap.lower()}" for cap in capabilities.get("drop") or []]
    args += [f"--cap-add={cap.lower()}" for cap in capabilities.get("add") or []]
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for path, mount in sorted(mounts.items()):
        args += ["--volume", f"{mount.host}:{path}" + (":ro" if mount.read_only else "")]
    for key in env_names:
        args += ["--env", key]
    for key, value in env_values.items():
        args += ["--env", f"{key}={value}"]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]
    # Kubernetes: command replaces the image's ENTRYPOINT (and its CMD), args replace CMD.
    command, arguments = container.get("command"), container.get("args")
    if command:
        args += ["--entrypoint", json.dumps(command)]
    args.append(image)
    return args + (arguments or [])  # podman drops the image's CMD when --entrypoint is given
