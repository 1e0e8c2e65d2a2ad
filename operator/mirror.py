"""The watch streams' objects, shrunk to what the operator reads (kept in memory per object).

The reconciler keeps the latest TalkingVideo, its Job and the Job's pods as the watches
deliver them; only the fields status.compute_status and the reconciler read are kept (a
Job's pod template carries the whole request, a pod its managedFields and more), which is
most of the operator's memory at scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict


class Metadata(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[dict[str, Any]]


class TalkingVideoBody(TypedDict):
    metadata: Metadata
    spec: dict[str, Any]
    status: NotRequired[dict[str, Any] | None]


class JobBody(TypedDict):
    metadata: Metadata
    spec: dict[str, Any]  # suspend and backoffLimit only
    status: dict[str, Any]  # Kubernetes' JobStatus, as it is


class PodBody(TypedDict):
    metadata: Metadata
    spec: dict[str, Any]  # nodeName, containers[].name/resources
    status: dict[str, Any]  # Kubernetes' PodStatus, as it is


TV_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "ownerReferences",
)
JOB_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "creationTimestamp")
POD_METADATA = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "labels", "annotations")


def _metadata(body: Mapping[str, Any], keys: tuple[str, ...]) -> Metadata:
    meta = body.get("metadata") or {}
    kept: Metadata = {}
    for key in keys:
        if key in meta:
            kept[key] = meta[key]  # type: ignore[literal-required]
    return kept


def talkingvideo(body: Mapping[str, Any], with_status: bool = True) -> TalkingVideoBody:
    """Spec (and status, unless the operator holds a fresher one) as they are; metadata
    without managedFields and annotations (kubectl's last-applied-configuration would
    double the memory of every object)."""
    shrunk = TalkingVideoBody(metadata=_metadata(body, TV_METADATA), spec=dict(body.get("spec") or {}))
    if with_status:
        shrunk["status"] = body.get("status")
    return shrunk


def job(body: Mapping[str, Any]) -> JobBody:
    """What compute_status reads from a Job; the pod template (with the request) stays out."""
    spec = body.get("spec") or {}
    return JobBody(
        metadata=_metadata(body, JOB_METADATA),
        spec={"suspend": spec.get("suspend"), "backoffLimit": spec.get("backoffLimit")},
        status=dict(body.get("status") or {}),
    )


def pod(body: Mapping[str, Any]) -> PodBody:
    """What compute_status reads from a pod."""
    spec = body.get("spec") or {}
    return PodBody(
        metadata=_metadata(body, POD_METADATA),
        spec={
            "nodeName": spec.get("nodeName"),
            "containers": [
                {"name": c.get("name"), "resources": c.get("resources")} for c in spec.get("containers") or []
            ],
        },
        status=dict(body.get("status") or {}),
    )


def still_there(uid: str | None, fresh: Mapping[str, Any] | None) -> bool:
    """Is the object the mirror holds (by uid) still on the server and not being deleted?
    A watch event can be handled after its object was deleted, or deleted and re-created
    under the same name: `fresh` is a GET by name made just now (None: not found)."""
    meta = (fresh or {}).get("metadata") or {}
    return bool(uid) and meta.get("uid") == uid and not meta.get("deletionTimestamp")
