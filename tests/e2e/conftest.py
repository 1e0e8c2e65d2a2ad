"""Fixtures for tests on a real Kubernetes API: the control plane, namespaces, S3, the test node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster.s3server import S3Server
from cluster.session import Cluster, open_cluster
from cluster.testnode import TestNode


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
