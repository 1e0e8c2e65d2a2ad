"""The operator image against the API server: `multitalk-operator` starts as uid 65532 from a
read-only root and serves /healthz (the chart's liveness and startup probes)."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from cluster import images
from cluster.controlplane import free_ports
from cluster.session import Cluster
from cluster.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.images]


def test_operator_image_starts_against_the_api_server_and_serves_healthz(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    if not images.image_exists(images.OPERATOR_IMAGE):
        pytest.fail(f"{images.OPERATOR_IMAGE} is not built: {images.BUILD_HINT}")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(Path(cluster.kubeconfig).read_text())
    kubeconfig.chmod(0o644)
    health, metrics = free_ports(2)
    name = f"operator-image-{namespace}"
    command = [*images.podman_command(), "run", "--rm", "--name", name, *images.limit_options(), "--pull", "never"]
    command += ["--network", "host", "--read-only", "--read-only-tmpfs=false", "--cap-drop", "all"]
    command += ["--volume", f"{images.writable(tmp_path / 'tmp')}:/tmp", "--volume", f"{kubeconfig}:/etc/kubeconfig:ro"]
    env = {
        "KUBECONFIG": "/etc/kubeconfig",
        "MULTITALK_NAMESPACES": namespace,
        "MULTITALK_HEALTH_PORT": str(health),
        "MULTITALK_METRICS_PORT": str(metrics),
    }
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*command, images.OPERATOR_IMAGE], stdout=out, stderr=subprocess.STDOUT)
    try:

        def healthy() -> int | None:
            assert process.poll() is None, f"the operator exited {process.returncode}:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as reply:
                    return int(reply.status)
            except OSError:
                return None

        assert eventually(healthy, 120, "the operator's /healthz") == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as reply:
            assert b"multitalk" in reply.read()
        whoami = subprocess.run(
            [*images.podman_command(), "exec", name, "python3", "-c", "import os; print(os.getuid(), os.getgid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert whoami.stdout.split() == ["65532", "65532"]
    finally:
        subprocess.run([*images.podman_command(), "stop", "--time", "10", name], capture_output=True, check=False)
        process.wait(timeout=60)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
