"""The chart on a real API server: the documented CRD route, the rendered objects and the
examples accepted (CEL rules included), Pod Security "restricted" enforced by admission,
and the operator's RBAC as the authorizer sees it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster.session import Cluster

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "chart"))

from chart_render import NAMESPACE, render_objects  # noqa: E402

pytestmark = pytest.mark.cluster


def _apply(cluster: Cluster, objects: list[dict[str, Any]], *args: str) -> str:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    return cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *args, input=body).stdout


@pytest.fixture(scope="module")
def crd_installed(cluster: Cluster) -> None:
    # The documented route for platform teams that manage the CRD themselves.
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/talkingvideos.multitalk.dev", "--timeout=60s")


@pytest.fixture
def restricted_namespace(cluster: Cluster, namespace: str) -> str:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    return namespace


def _release_objects(watched: str) -> list[dict[str, Any]]:
    """The chart in namespaced mode for one test namespace, installed into that namespace."""
    values = {"watchNamespaces": [watched], "crds": {"install": False}, "modelCache": {"claimName": "models"}}
    objects = render_objects(values, namespace=watched)
    for obj in objects:
        if obj["metadata"].get("namespace") == NAMESPACE:
            obj["metadata"]["namespace"] = watched
    return objects


def test_rendered_objects_and_pods_pass_admission(
    cluster: Cluster, crd_installed: None, restricted_namespace: str
) -> None:
    ns = restricted_namespace
    objects = _release_objects(ns)
    pods = [o for o in objects if o["kind"] == "Pod"]
    others = [o for o in objects if o["kind"] != "Pod"]
    _apply(cluster, others)
    deployment = next(o for o in others if o["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    operator_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-pod", "namespace": ns, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }
    # Pod Security admission enforces "restricted" on pods (not on Deployments): dry-run
    # creates both pods through it; a violation is refused with "violates PodSecurity".
    out = _apply(cluster, [operator_pod, *pods], "--dry-run=server")
    assert out.count("serverside-applied (server dry run)") == 2, out


def test_admission_refuses_a_non_restricted_pod(cluster: Cluster, restricted_namespace: str) -> None:
    # Proves the namespace really enforces the profile the test above relies on.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root-pod", "namespace": restricted_namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    done = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert done.returncode != 0 and "violates PodSecurity" in done.stderr


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("talkingvideo-*.yaml")), ids=lambda p: p.name)
def test_examples_are_accepted(cluster: Cluster, crd_installed: None, namespace: str, example: Path) -> None:
    obj = yaml.safe_load(example.read_text())
    obj["metadata"]["namespace"] = namespace
    out = _apply(cluster, [obj], "--dry-run=server")
    assert "serverside-applied (server dry run)" in out


def _can(cluster: Cluster, user: str, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else []
    done = cluster.kubectl("auth", "can-i", verb, resource, f"--as={user}", *scope, check=False)
    return done.stdout.strip() == "yes"


def test_operator_rbac_as_the_authorizer_sees_it(cluster: Cluster, crd_installed: None, namespace: str) -> None:
    objects = _release_objects(namespace)
    _apply(cluster, [o for o in objects if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")])
    account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    user = f"system:serviceaccount:{namespace}:{account}"
    allowed = [
        ("watch", "talkingvideos.multitalk.dev"),
        ("patch", "talkingvideos.multitalk.dev/status"),
        ("create", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("list", "pods"),
        ("get", "pods/log"),
        ("create", "events"),
        ("create", "events.events.k8s.io"),
    ]
    for verb, resource in allowed:
        assert _can(cluster, user, verb, resource, namespace), (verb, resource)
    denied = [
        ("get", "secrets", namespace),
        ("list", "secrets", namespace),
        ("create", "pods", namespace),
        ("delete", "talkingvideos.multitalk.dev", namespace),
        ("update", "jobs.batch", namespace),
        ("list", "talkingvideos.multitalk.dev", "default"),  # not a watched namespace
        ("list", "namespaces", None),  # nothing cluster-wide in namespaced mode
        ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
    ]
    for verb, resource, ns in denied:
        assert not _can(cluster, user, verb, resource, ns), (verb, resource, ns)


def test_cluster_mode_rbac_as_the_authorizer_sees_it(cluster: Cluster, crd_installed: None, namespace: str) -> None:
    values = {"crds": {"install": False}, "rbac": {"aggregateToDefaultRoles": False}}
    objects = render_objects(values, namespace=namespace)
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            obj["metadata"]["name"] = f"{name}-{namespace}"  # cluster-scoped: unique per test
        if obj["kind"] == "ClusterRoleBinding":
            obj["roleRef"]["name"] = f"{obj['roleRef']['name']}-{namespace}"
    rbac = [o for o in objects if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    _apply(cluster, rbac)
    try:
        account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
        user = f"system:serviceaccount:{namespace}:{account}"
        for verb, resource, ns in [
            ("watch", "talkingvideos.multitalk.dev", "default"),
            ("create", "jobs.batch", "kube-public"),
            ("list", "namespaces", None),
            ("watch", "customresourcedefinitions.apiextensions.k8s.io", None),
        ]:
            assert _can(cluster, user, verb, resource, ns), (verb, resource, ns)
        for verb, resource, ns in [
            ("get", "secrets", "default"),
            ("list", "secrets", None),
            ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
            ("delete", "namespaces", None),
            ("create", "pods", "default"),
        ]:
            assert not _can(cluster, user, verb, resource, ns), (verb, resource, ns)
    finally:
        for obj in rbac:
            if obj["kind"] != "ServiceAccount":
                cluster.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found")
