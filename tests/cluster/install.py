"""Install the project's Helm chart with the Helm library and run the operator on a test node.

The chart's Deployment is real: the controller-manager makes its ReplicaSet and pod, the
test node binds that pod and runs it from the operator image (`make images`) with the
chart's environment and a token of the chart's ServiceAccount, so the chart's RBAC is what
the operator gets. Killing that container is a crash; the node restarts it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
from kubernetes import client

from cluster import images
from cluster.controlplane import free_ports
from cluster.session import Cluster
from cluster.testnode import TestNode
from cluster.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm"
RELEASE = "multitalk"
SYSTEM_NAMESPACE = "multitalk-system"


def chart_values(s3_endpoint: str, secret_name: str = "s3", **overrides: Any) -> dict[str, Any]:
    """Values for tests: the images `make images` built, local S3, fast resync, free ports
    (other processes share this host)."""
    operator_repository, operator_tag = images.repository_and_tag(images.OPERATOR_IMAGE)
    runner_repository, runner_tag = images.repository_and_tag(images.RUNNER_IMAGE)
    metrics_port, health_port = free_ports(2)
    values: dict[str, Any] = {
        "image": {"repository": operator_repository, "tag": operator_tag},
        "storage": {"endpoint": s3_endpoint, "region": "us-east-1", "secretName": secret_name},
        "runner": {
            "image": {"repository": runner_repository, "tag": runner_tag},
            "resources": {"limits": {"nvidia.com/gpu": 1}},
        },
        "operator": {"progressPollSeconds": 1, "resyncSeconds": 5},
        "metrics": {"port": metrics_port},
        "health": {"port": health_port},
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


def hand_crd_to_release(cluster: Cluster, namespace: str = SYSTEM_NAMESPACE) -> None:
    """Let the release adopt a CRD applied with `kubectl apply --server-side -f crds/`: the
    handover the README documents (Helm's ownership label and annotations)."""
    crd = "crd/talkingvideos.multitalk.dev"
    if cluster.kubectl("get", crd, check=False).returncode != 0:
        return
    cluster.kubectl("label", "--overwrite", crd, "app.kubernetes.io/managed-by=Helm")
    cluster.kubectl(
        "annotate",
        "--overwrite",
        crd,
        f"meta.helm.sh/release-name={RELEASE}",
        f"meta.helm.sh/release-namespace={namespace}",
    )


CRD_NAME = "talkingvideos.multitalk.dev"


def remove_foreign_crd(cluster: Cluster) -> None:
    """Delete a TalkingVideo CRD that another test applied by hand on the shared loopback
    cluster: Helm will not adopt it (ownership metadata, server-side apply conflicts) and
    the chart must install its own. Deleting it also deletes those tests' TalkingVideos."""
    found = cluster.kubectl("get", f"crd/{CRD_NAME}", "-o", "json", check=False)
    if found.returncode != 0:
        return
    labels = json.loads(found.stdout)["metadata"].get("labels") or {}
    if labels.get("app.kubernetes.io/managed-by") != "Helm":
        cluster.kubectl("delete", f"crd/{CRD_NAME}", "--wait=true", "--timeout=60s")


def install(cluster: Cluster, values: dict[str, Any], namespace: str = SYSTEM_NAMESPACE) -> dict[str, Any]:
    if values.get("crds", {}).get("install", True):
        remove_foreign_crd(cluster)
    with helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=namespace) as config:
        release = config.install(str(CHART), RELEASE, values, namespace=namespace, create_namespace=True, timeout=120)
    return dict(release)


def uninstall(cluster: Cluster, namespace: str = SYSTEM_NAMESPACE) -> None:
    with helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=namespace) as config:
        config.uninstall(RELEASE, ignore_not_found=True)


def operator_pod(cluster: Cluster, namespace: str = SYSTEM_NAMESPACE) -> dict[str, Any] | None:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/name=multitalk-operator", _preload_content=False
    )
    items = [p for p in json.loads(pods.data)["items"] if not p["metadata"].get("deletionTimestamp")]
    return items[0] if items else None


def wait_operator_running(cluster: Cluster, node: TestNode, namespace: str = SYSTEM_NAMESPACE) -> dict[str, Any]:
    node.adopt(namespace)

    def running() -> dict[str, Any] | None:
        pod = operator_pod(cluster, namespace)
        return pod if pod and pod.get("status", {}).get("phase") == "Running" else None

    pod: dict[str, Any] = eventually(running, 120, "the operator pod to run on the test node")
    return pod
