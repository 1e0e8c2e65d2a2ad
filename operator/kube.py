"""The operator's few Kubernetes API calls (the side-effect edge), via the official client.

The client is synchronous; calls run in worker threads. Responses are read as raw JSON
(`_preload_content=False`): the operator works on dicts, and skipping the client's model
deserialisation is most of the per-object CPU cost at scale. The operator never reads
Secrets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from multitalk.operator import api
from multitalk.operator.times import format_time

__all__ = ["ApiException", "Kube"]


def load_config(pool_size: int = 16) -> client.ApiClient:
    """In-cluster credentials when in a pod, else KUBECONFIG (tests, laptops)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def _json(response: Any) -> Any:
    data = response.data
    return json.loads(data) if data else None


class Kube:
    """Async wrappers around the handful of endpoints the operator uses."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(
                lambda: _json(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(
            lambda: _json(self.batch.create_namespaced_job(namespace, body, _preload_content=False))
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        def call() -> None:
            try:
                # Background: the garbage collector removes the pods after the Job.
                self.batch.delete_namespaced_job(
                    name, namespace, propagation_policy="Background", _preload_content=False
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        await asyncio.to_thread(call)

    async def patch_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        body = {"spec": {"suspend": suspend}}
        await asyncio.to_thread(lambda: self.batch.patch_namespaced_job(name, namespace, body, _preload_content=False))

    async def list_job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        data = await asyncio.to_thread(
            lambda: _json(
                self.core.list_namespaced_pod(
                    namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}", _preload_content=False
                )
            )
        )
        return list((data or {}).get("items") or [])

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int, max_bytes: int) -> str:
        def call() -> str:
            response = self.core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=lines, _preload_content=False
            )
            raw: bytes = response.data or b""
            return raw[-max_bytes:].decode("utf-8", errors="replace")

        return await asyncio.to_thread(call)

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the object (what `kubectl describe tv` shows)."""
        meta = obj["metadata"]
        now = format_time(dt.datetime.now(dt.UTC))
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{api.GROUP}/{api.VERSION}",
                "kind": api.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "multitalk-operator"},
            "reportingComponent": "multitalk.dev/operator",
            "reportingInstance": socket.gethostname()[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await asyncio.to_thread(
            lambda: self.core.create_namespaced_event(meta["namespace"], body, _preload_content=False)
        )

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch .status through the status subresource (spec edits cannot race it)."""
        return await asyncio.to_thread(
            lambda: _json(
                self.custom.patch_namespaced_custom_object_status(
                    api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"status": status}, _preload_content=False
                )
            )
        )
