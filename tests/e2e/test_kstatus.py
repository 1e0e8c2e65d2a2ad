"""GitOps tools read TalkingVideos right at every phase: kstatus and Flux, with their own libraries.

TalkingVideos are taken from the real API server in each phase (the chart's operator, the
test node, S3) and handed to tests/kstatus/main.go, built from the Go module proxy:
sigs.k8s.io/cli-utils' kstatus (kpt and the upstream library), Flux's fork of it (Flux's
default health check) and Flux's CEL evaluator running the healthCheckExprs of
examples/gitops/flux-kustomization.yaml. All three must say InProgress while the render is
on its way (pending, queued, suspended, running), Current once it Succeeded, Failed once
it Failed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster.session import Cluster
from cluster.talkingvideos import apply, get_tv, talking_video, wait_phase
from cluster.testnode import TestNode
from cluster.waiting import eventually
from kubernetes import client

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tests" / "kstatus" / "build.sh"
FLUX_KUSTOMIZATION = REPO / "examples" / "gitops" / "flux-kustomization.yaml"


@pytest.fixture(scope="session")
def kstatus_read() -> Path:
    """The Go program, built once into the cache (as tests/k8s/build.sh builds the cluster)."""
    done = subprocess.run(["bash", str(BUILD)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(done.stdout.strip().splitlines()[-1])


def flux_expressions() -> dict[str, str]:
    kustomization = yaml.safe_load(FLUX_KUSTOMIZATION.read_text())
    [check] = [c for c in kustomization["spec"]["healthCheckExprs"] if c["kind"] == "TalkingVideo"]
    return {k: check[k] for k in ("current", "inProgress", "failed") if k in check}


def read_health(binary: Path, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    payload = json.dumps({"fluxHealthCheck": flux_expressions(), "objects": objects})
    done = subprocess.run([str(binary)], input=payload, capture_output=True, text=True, check=True, timeout=60)
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def _conditions(tv: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (tv.get("status") or {}).get("conditions") or []}


def _wait(cluster: Cluster, ns: str, name: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        tv = get_tv(cluster, ns, name)
        return tv if tv.get("status") and check(tv) else None

    found: dict[str, Any] = eventually(reached, 120, f"{ns}/{name}: {what}")
    return found


def _stop_the_runner(cluster: Cluster, node: TestNode, ns: str, tv: str) -> str:
    """SIGSTOP the runner of `tv` as soon as its process exists: it stays Running for us."""
    core = client.CoreV1Api(cluster.api)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for pod in core.list_namespaced_pod(ns).items:
            if (pod.metadata.annotations or {}).get("multitalk.dev/talkingvideo") == tv and node.kill(
                ns, pod.metadata.name, signal.SIGSTOP
            ):
                return str(pod.metadata.name)
        time.sleep(0.02)
    raise AssertionError(f"the runner of {ns}/{tv} never started")


def test_kstatus_and_flux_read_every_phase(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode, kstatus_read: Path
) -> None:
    ns = render_namespace
    apply(cluster, ns, talking_video("pending", ns, scheduling={"nodeSelector": {"example.com/gpu": "none"}}))
    apply(cluster, ns, talking_video("queued", ns, scheduling={"queueName": "gpu"}))
    apply(cluster, ns, talking_video("suspended", ns, suspend=True))
    apply(cluster, ns, talking_video("failed", ns, speakers=[{"audio": f"s3://{ns}/in/missing.wav"}]))
    apply(cluster, ns, talking_video("hello", ns))

    pod = _stop_the_runner(cluster, gpu_node, ns, "hello")
    seen: dict[str, dict[str, Any]] = {}
    try:
        seen["running"] = wait_phase(cluster, ns, "hello", ("Running",))
        assert _conditions(seen["running"])["Running"]["status"] == "True"
    finally:
        gpu_node.kill(ns, pod, signal.SIGCONT)
    seen["pending"] = _wait(
        cluster, ns, "pending", lambda tv: _conditions(tv)["Running"]["reason"] == "Unschedulable", "Unschedulable"
    )
    seen["queued"] = wait_phase(cluster, ns, "queued", ("Queued",))
    seen["suspended"] = wait_phase(cluster, ns, "suspended", ("Suspended",))
    seen["succeeded"] = wait_phase(cluster, ns, "hello", ("Succeeded",), timeout=180)
    seen["failed"] = wait_phase(cluster, ns, "failed", ("Failed",), timeout=180)
    assert seen["pending"]["status"]["phase"] == "Pending"
    assert _conditions(seen["failed"])["Failed"]["reason"] == "StorageRefused"

    for name, tv in seen.items():
        generation = tv["metadata"]["generation"]
        assert tv["status"]["observedGeneration"] == generation, name
        for kind in ("Ready", "Reconciling", "Stalled"):
            assert _conditions(tv)[kind]["observedGeneration"] == generation, (name, kind)

    readings = dict(zip(seen, read_health(kstatus_read, list(seen.values())), strict=True))
    print(json.dumps(readings, indent=1))  # shown with -s, and when an assertion fails
    expected = {
        "pending": "InProgress",
        "queued": "InProgress",
        "suspended": "InProgress",
        "running": "InProgress",
        "succeeded": "Current",
        "failed": "Failed",
    }
    for name, want in expected.items():
        got = {tool: reading["status"] for tool, reading in readings[name].items()}
        assert got == {"kstatus": want, "fluxKstatus": want, "fluxCel": want}, (name, readings[name])
    # kstatus explains itself with the operator's own message.
    assert readings["failed"]["kstatus"]["message"] == _conditions(seen["failed"])["Stalled"]["message"]
    assert "Kueue" in readings["queued"]["kstatus"]["message"]
