"""The project's images in local container storage: their names, and running them with podman.

`make images` builds them with podman (no daemon); the image tests, the test node and
`make demo-cluster` run them from the same storage. Two facts of this sandbox shape the
`podman run` options (they are harmless elsewhere):
- crun cannot set up cgroups on a hybrid cgroup v1/v2 host, runc can: runc is used when
  installed;
- a container's rlimits may be lowered but not raised (no CAP_SYS_RESOURCE), and podman
  asks for more open files and processes than a shell has: the limits passed are the
  caller's own (processes capped at what podman's monitor process keeps, 32768).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# What `make images` tags (and exports under these names, so tests use the same ones).
OPERATOR_IMAGE = os.environ.get("MULTITALK_TEST_OPERATOR_IMAGE") or f"multitalk-operator:{VERSION}"
RUNNER_IMAGE = os.environ.get("MULTITALK_TEST_RUNNER_IMAGE") or f"multitalk-runner:{VERSION}"
BUILD_HINT = "build them with `make images` (podman, Debian's package)"
_MAX_PROCESSES = 32768


def podman() -> str | None:
    return shutil.which("podman")


def image_exists(image: str) -> bool:
    found = podman()
    if found is None:
        return False
    return subprocess.run([found, "image", "exists", image], capture_output=True, check=False).returncode == 0


def repository_and_tag(image: str) -> tuple[str, str]:
    """`name:tag` split the way the chart's image values take it."""
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        return image, "latest"
    return repository, tag


def podman_command() -> list[str]:
    """podman with the OCI runtime that works here."""
    found = podman()
    if found is None:
        raise RuntimeError(f"podman is not installed: {BUILD_HINT}")
    runc = shutil.which("runc")
    return [found, "--runtime", runc] if runc else [found]


def limit_options() -> list[str]:
    """--ulimit options at or below this process's own limits (podman's defaults are higher)."""
    files_soft, files_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    procs_soft, procs_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    procs = min(v for v in (procs_soft, procs_hard, _MAX_PROCESSES) if v != resource.RLIM_INFINITY)
    files = [v if v != resource.RLIM_INFINITY else 1048576 for v in (files_soft, files_hard)]
    return ["--ulimit", f"nofile={files[0]}:{files[1]}", "--ulimit", f"nproc={procs}:{procs}"]


def image_user(image: str) -> str:
    """The image's USER ('' when it sets none, which means root)."""
    result = subprocess.run(
        [*podman_command(), "image", "inspect", "--format", "{{.Config.User}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def writable(path: Path) -> Path:
    """A folder any container user may write, like an emptyDir."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def run(
    image: str,
    *args: str,
    user: str = "65532:65532",
    network: str = "none",
    volumes: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    entrypoint: list[str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`podman run` as the pods run it: the image's user (or ``user``), a read-only root
    filesystem, only the given volumes writable (``{host: container[:ro]}``), no network."""
    command = [*podman_command(), "run", "--rm", *limit_options(), "--pull", "never", "--network", network]
    command += ["--user", user, "--read-only", "--read-only-tmpfs=false", "--cap-drop", "all"]
    command += ["--security-opt", "no-new-privileges"]
    for host, target in (volumes or {}).items():
        command += ["--volume", f"{host}:{target}"]
    for key, value in (env or {}).items():
        command += ["--env", f"{key}={value}"]
    if entrypoint is not None:
        command += ["--entrypoint", json.dumps(entrypoint)]
    return subprocess.run([*command, image, *args], capture_output=True, text=True, check=False, timeout=timeout)


def inspect(image: str) -> dict[str, Any]:
    """The image's configuration as `podman image inspect` gives it."""
    result = subprocess.run([*podman_command(), "image", "inspect", image], capture_output=True, text=True, check=True)
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found[0]
