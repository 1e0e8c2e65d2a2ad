"""The operator's few Kubernetes API calls (the side-effect edge), over kopf's own HTTP stack.

aiohttp (which kopf watches with) and kopf's connection info, not the kubernetes client:
that client's models alone are ~45 MiB of the process (imported by kopf too when it is
installed, so the operator's lock leaves it out), and its blocking calls need threads.
Credentials come from login(), which kopf uses for its watches as well: the pod's service
account (token, CA, KUBERNETES_SERVICE_HOST), else KUBECONFIG. A 401 re-reads them once
(bound service-account tokens rotate). Responses are plain JSON dicts. The operator never
reads Secrets.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
from importlib import metadata
from typing import Any

import aiohttp
import kopf

from multitalk.operator import api
from multitalk.operator.reasons import ApiCall
from multitalk.operator.times import format_time

__all__ = ["ApiError", "Kube", "login"]

MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


class ApiError(Exception):
    """A request the API server refused (status: the HTTP status)."""

    def __init__(self, status: int, reason: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}")
        self.status = status
        self.reason = reason
        self.call: ApiCall | None = None  # set by the caller that knows which call it was


def login(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """In-cluster credentials when in a pod, else KUBECONFIG (tests, laptops)."""
    settings = settings or kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings)
    if info is not None:
        # The service's address as the kubelet gives it: no cluster DNS needed.
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if host and port:
            host = f"[{host}]" if ":" in host else host
            info = dataclasses.replace(info, server=f"https://{host}:{port}")
        return info
    info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no KUBECONFIG: cannot reach the API server")
    return info


def _version() -> str:
    try:
        return metadata.version("multitalk-operator")
    except metadata.PackageNotFoundError:
        return "unknown"


class Kube:
    """Async wrappers around the handful of endpoints the operator uses."""

    def __init__(self, connections: int) -> None:
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    def _open(self) -> aiohttp.ClientSession:
        info = login()
        self._server = info.server.rstrip("/")
        headers = {**info.as_http_headers(), "User-Agent": f"multitalk-operator/{_version()}"}
        connector = aiohttp.TCPConnector(limit=self.connections, ssl=info.as_ssl_context())
        self._session = aiohttp.ClientSession(connector=connector, headers=headers, timeout=TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        text: bool = False,
    ) -> Any:
        for attempt in (1, 2):
            session = self._session or self._open()
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": content_type} if body is not None else None
            async with session.request(
                method, self._server + path, params=params, data=data, headers=headers
            ) as response:
                if response.status == 401 and attempt == 1:
                    await self.close()  # a rotated token: log in again, once
                    continue
                if response.status >= 400:
                    raise ApiError(response.status, response.reason or "", method, path)
                if text:
                    return await response.text(errors="replace")
                return await response.json(content_type=None)
        raise AssertionError("unreachable")

    async def get_talkingvideo(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{namespace}/{api.PLURAL}/{name}"
        try:
            tv: dict[str, Any] = await self._request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return tv

    @staticmethod
    def _jobs(namespace: str, name: str = "") -> str:
        return f"/apis/batch/v1/namespaces/{namespace}/jobs" + (f"/{name}" if name else "")

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = await self._request("GET", self._jobs(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return job

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._request("POST", self._jobs(namespace), body=body)
        return created

    async def delete_job(self, namespace: str, name: str) -> None:
        # Background: the garbage collector removes the pods after the Job.
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            await self._request("DELETE", self._jobs(namespace, name), body=options)
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def patch_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        body = {"spec": {"suspend": suspend}}
        await self._request("PATCH", self._jobs(namespace, name), body=body, content_type=MERGE_PATCH)

    async def list_job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        params = {"labelSelector": f"batch.kubernetes.io/job-name={job_name}"}
        data = await self._request("GET", f"/api/v1/namespaces/{namespace}/pods", params=params)
        return list((data or {}).get("items") or [])

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int, max_bytes: int) -> str:
        params = {"container": container, "tailLines": str(lines)}
        log: str = await self._request(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", params=params, text=True
        )
        return log[-max_bytes:]

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
        await self._request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=body)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch .status through the status subresource (spec edits cannot race it)."""
        path = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{namespace}/{api.PLURAL}/{name}/status"
        await self._request("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)
