"""KMock's Kubernetes emulator with the few server-side behaviours the operator relies on.

KMock stores objects and streams watch events, but has no controllers, no validation and
no server-filled metadata. This subclass adds, for every created object: a name from
generateName (kopf's Events use it), uid, creationTimestamp, resourceVersion and
generation; generation bumps on spec changes; label selectors on LIST; cascading deletion
of owned objects (what the garbage collector does with ownerReferences); and pod logs.
Everything else stays KMock's: real HTTP, real watch streams, real merge patches.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import uuid
from typing import Any

import aiohttp.web
import attrs
import kmock

from multitalk.operator import api

TV = f"{api.GROUP}/{api.VERSION}/{api.PLURAL}"
RESOURCES: dict[str, kmock.ResourceInfo] = {
    TV: kmock.ResourceInfo(
        kind=api.KIND,
        singular=api.SINGULAR,
        namespaced=True,
        verbs={"list", "watch", "get", "patch", "create", "delete", "update"},
        shortnames=set(api.SHORT_NAMES),
        categories=set(api.CATEGORIES),
        subresources={"status"},
    ),
    "batch/v1/jobs": kmock.ResourceInfo(
        kind="Job",
        namespaced=True,
        verbs={"list", "watch", "get", "patch", "create", "delete"},
        subresources={"status"},
    ),
    "v1/pods": kmock.ResourceInfo(
        kind="Pod", namespaced=True, verbs={"list", "watch", "get", "patch", "create", "delete"}, subresources={"log"}
    ),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"create", "list", "get"}),
    # Listed and watched by Cluster.__call__ (KMock cannot parse this path).
    "v1/namespaces": kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs={"list", "watch", "get"}),
    "apiextensions.k8s.io/v1/customresourcedefinitions": kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"list", "watch", "get"}
    ),
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    """See the module docstring."""

    logs: dict[tuple[str, str], str] = attrs.field(factory=dict)
    # KMock matches every request against its whole request history (quadratic at scale).
    # The benchmark keeps only the recent history and counts requests in `tally` instead.
    history_limit: int | None = None
    tally: collections.Counter[tuple[str, str, str]] = attrs.field(factory=collections.Counter)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1))

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, info in RESOURCES.items():
            self.resources[key] = info
        self["get", kmock.resource("v1/pods"), kmock.subresource("log")] << self._serve_log
        self[kmock.action.LIST, kmock.resource("v1/pods")] << self._serve_selected_pods

    def _serve_selected_pods(self, request: kmock.Request) -> dict[str, Any]:
        """LIST pods with an equality labelSelector (KMock lists ignore selectors)."""
        wanted = dict(
            part.split("=", 1) for part in (request.params.get("labelSelector") or "").split(",") if "=" in part
        )
        items = [
            pod
            for pod in self.objects_of("v1/pods", request.namespace)
            if all((pod.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # KMock cannot parse the cluster-scoped /api/v1/namespaces path: serve it here, the
        # namespaces being those of the stored objects (kopf lists and watches them when
        # given a list of namespaces to serve).
        if raw_request.path == "/api/v1/namespaces":
            if raw_request.query.get("watch") in ("true", "1"):
                response = aiohttp.web.StreamResponse()
                await response.prepare(raw_request)
                await asyncio.sleep(float(raw_request.query.get("timeoutSeconds", "300")))
                return response
            names = sorted({ns for (_, ns, _) in self.objects if ns} | {"default", "media"})
            items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
            return aiohttp.web.json_response(
                {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": items}
            )
        return await super().__call__(raw_request)

    def _serve_log(self, request: kmock.Request) -> bytes:
        text = self.logs.get((request.namespace or "", request.name or ""), "")
        tail = int(request.params.get("tailLines", "0") or 0)
        lines = text.splitlines(keepends=True)
        return "".join(lines[-tail:] if tail else lines).encode()

    def objects_of(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (res, ns, _name), obj in self.objects.items():
            if res == kmock.resource(resource) and not obj.deleted and (namespace is None or ns == namespace):
                out.append(obj.raw)
        return out

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        who = "test" if agent.startswith("kmock/") else "operator"
        what = request.resource.plural if request.resource is not None else request.url.path
        self.tally[
            (who, request.method.value, f"{what}/{request.subresource}" if request.subresource else str(what))
        ] += 1
        if self.history_limit is not None and len(self._requests) > 2 * self.history_limit:
            del self._requests[: -self.history_limit]
        if request.resource is not None and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("namespace", request.namespace)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = str(next(self._versions))
        elif request.resource is not None and request.action == kmock.action.UPDATE and isinstance(request.data, dict):
            key = (request.resource, request.namespace, request.name)
            data = request.data
            if request.subresource == "status":
                for other in [k for k in data if k != "status"]:  # the status subresource ignores the rest
                    del data[other]
            elif key in self.objects and not self.objects[key].deleted and "spec" in data:
                current = self.objects[key].raw
                if data["spec"] != {k: current.get("spec", {}).get(k) for k in data["spec"]}:
                    generation = int(current.get("metadata", {}).get("generation", 1)) + 1
                    data.setdefault("metadata", {})["generation"] = generation
            if request.subresource != "status":
                data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        elif request.resource is not None and request.action == kmock.action.DELETE and request.name:
            await self._cascade(request)
        response = await super()._handle(request)
        return response

    async def _cascade(self, request: kmock.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        uid = self.objects[key].raw.get("metadata", {}).get("uid")
        for (res, ns, name), obj in list(self.objects.items()):
            if obj.deleted:
                continue
            owners = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners):
                obj.delete()
                await self._buses[res].put({"type": "DELETED", "object": obj.last.raw})
                await self._cascade(kmock.Request(resource=res, namespace=ns, name=name))
