"""Fixtures for tests on a real Kubernetes API: the control plane, namespaces, S3, the test node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import install
from cluster.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from cluster.session import Cluster, open_cluster
from cluster.testnode import TestNode
from kubernetes import client

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    given = request.config.getoption("--kubeconfig", default=None)
    opened, close = open_cluster(given)
    try:
        yield opened
    finally:
        close()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = cluster.new_namespace()
    yield name
    cluster.delete_namespace(name)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def local_cluster(cluster: Cluster) -> Cluster:
    """The loopback control plane: tests that restart it or play its node need it."""
    if not cluster.local:
        pytest.skip("needs the loopback control plane (restarts the API server or plays the node)")
    return cluster


@pytest.fixture
def test_node(local_cluster: Cluster, namespace: str) -> Iterator[TestNode]:
    """A GPU node that runs the pods of this test's namespace as local processes."""
    node = TestNode(local_cluster.api, f"node-{namespace}", gpus=1, namespace=namespace)
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def gpu_node(local_session_cluster: Cluster) -> Iterator[TestNode]:
    """One GPU node for the operator's pod and the renders of the namespaces it adopts."""
    node = TestNode(local_session_cluster.api, "gpu-node", gpus=4, namespaces=set(), max_pods=1100)
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def local_session_cluster(cluster: Cluster) -> Cluster:
    if not cluster.local:
        pytest.skip("needs the loopback control plane (plays the node)")
    return cluster


@pytest.fixture(scope="session")
def operator(local_session_cluster: Cluster, gpu_node: TestNode, s3: S3Server) -> Iterator[dict[str, Any]]:
    """The chart installed with the Helm library; its operator pod running on the GPU node."""
    # Earlier tests may have applied crds/ with kubectl: hand it over as the README says.
    install.hand_crd_to_release(local_session_cluster)
    release = install.install(local_session_cluster, install.chart_values(s3.endpoint))
    local_session_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/talkingvideos.multitalk.dev", "--timeout=60s"
    )
    install.wait_operator_running(local_session_cluster, gpu_node)
    yield release
    install.uninstall(local_session_cluster)


@pytest.fixture
def render_namespace(cluster: Cluster, namespace: str, gpu_node: TestNode, s3: S3Server) -> str:
    """A namespace whose pods the GPU node runs, with the S3 Secret and a bucket of inputs."""
    gpu_node.adopt(namespace)
    client.CoreV1Api(cluster.api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "s3"},
            "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
        },
    )
    s3.client().create_bucket(Bucket=namespace)
    for name in ("hello.wav", "portrait.jpg"):
        s3.client().upload_file(str(MEDIA / name), namespace, f"in/{name}")
    return namespace
