"""The scheduler's part: which pending pods fit the node, binding them, reporting the others."""

from __future__ import annotations

import contextlib
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from cluster.testnode.clock import now


def _quantity(value: str | int | None) -> int:
    """Integer count of an extended resource such as nvidia.com/gpu."""
    return int(str(value)) if value not in (None, "") else 0


def gpu_request(pod: dict[str, Any]) -> int:
    total = 0
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        want = (resources.get("limits") or {}).get("nvidia.com/gpu") or (resources.get("requests") or {}).get(
            "nvidia.com/gpu"
        )
        total += _quantity(want)
    return total


class Scheduling:
    """Mixed into TestNode: these read the node's name, labels, GPU count and pod limit."""

    core: client.CoreV1Api
    name: str
    labels: dict[str, str]
    gpus: int
    max_pods: int

    def _misfit(self, pod: dict[str, Any], used_gpus: int, pod_count: int) -> str | None:
        selector = pod["spec"].get("nodeSelector") or {}
        if any(self.labels.get(k) != v for k, v in selector.items()):
            return "node(s) didn't match Pod's node affinity/selector"
        if gpu_request(pod) > self.gpus - used_gpus:
            return "Insufficient nvidia.com/gpu"
        if pod_count >= self.max_pods:
            return "Too many pods"
        return None

    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=meta["name"], uid=meta["uid"]),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.name),
        )
        try:
            self.core.create_namespaced_pod_binding(meta["name"], meta["namespace"], body, _preload_content=False)
        except ApiException as error:
            if error.status not in (404, 409):  # gone, or bound already
                raise

    def _report_unschedulable(self, pod: dict[str, Any], reason: str) -> None:
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": f"0/1 nodes are available: 1 {reason}.",
            "lastTransitionTime": now(),
        }
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": {"conditions": [condition]}}
            )
