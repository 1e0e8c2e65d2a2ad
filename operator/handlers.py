"""kopf registrations: three watches feed the Reconciler (reconciler.py), which does the work.

- TalkingVideos, our Jobs and our runner pods are watched; Jobs and pods with a
  server-side label selector (app.kubernetes.io/managed-by=multitalk-operator), so the API
  server streams only ours, never every Job and pod of the cluster.
- Resync and progress polling run in one background task, not kopf timers: kopf adds a
  finalizer to every object that has a timer. No finalizer at all: deleting a
  TalkingVideo needs no cleanup beyond the garbage collector.
- kopf never retries a failing on.event handler; these only update mirrors and schedule
  a reconcile, whose failures the periodic resync retries.
- ownerReferences via kopf.append_owner_reference, not kopf.adopt: adopt also copies all
  the owner's labels (Argo CD's app.kubernetes.io/instance would make Argo CD prune the
  Job); only allow-listed labels are copied (job_builder.copied_labels).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from multitalk.operator import api, job_builder, kube
from multitalk.operator.api_calls import API_CONCURRENCY
from multitalk.operator.object_state import Key
from multitalk.operator.reconciler import Reconciler
from multitalk.operator.settings import OperatorSettings

TVS = (api.GROUP, api.VERSION, api.PLURAL)
JOBS = ("batch", "v1", "jobs")
PODS = ("v1", "pods")
OURS = {job_builder.LABEL_MANAGED_BY: job_builder.MANAGER}


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: only on.event handlers here, which never read one.

    kopf builds the "essence" of every watch event for the diff of on.create/update
    handlers: a deep copy of the whole body (twice, with the progress storage's cleaning).
    That was most of kopf's CPU per event, a fifth of the operator's at 1,000 objects.
    """

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def kopf_settings(ours: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings: our own annotation prefix, watch timeouts, server-side selectors."""
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"  # never added: no deletion handlers
    settings.watching.server_timeout = ours.watch_server_timeout
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 30
    selector = ",".join(f"{k}={v}" for k, v in OURS.items())
    settings.watching.label_selectors[JOBS] = selector
    settings.watching.label_selectors[PODS] = selector
    # Our own events say what happened; kopf's per-handler log events would be noise.
    settings.posting.level = logging.WARNING
    settings.posting.event_name_prefix = "multitalk-"
    return settings


# The handlers are async (kopf would run plain functions in threads) and only update the
# mirrors and schedule a reconcile.


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo["reconciler"]
    return reconciler


def _owner(namespace: str | None, meta: Any) -> Key | None:
    """The TalkingVideo a Job or pod belongs to (the annotation job_builder puts on both)."""
    name = (meta.get("annotations") or {}).get(job_builder.ANNOTATION_TV_NAME)
    return (namespace or "", name) if name else None


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf's watches use the same credentials as the operator's own requests (kube.py)."""
    return kube.login(settings)


@kopf.on.startup()
async def startup(memo: kopf.Memo, **_: Any) -> None:
    ours: OperatorSettings = memo["settings"]
    reconciler = Reconciler(kube.Kube(connections=API_CONCURRENCY), ours)
    memo["reconciler"] = reconciler
    memo["ticker"] = asyncio.create_task(reconciler.tick_forever(), name="multitalk resync/progress")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ticker = memo.get("ticker")
    if isinstance(ticker, asyncio.Task):
        ticker.cancel()
    reconciler = memo.get("reconciler")
    if isinstance(reconciler, Reconciler):
        await reconciler.kube.close()


@kopf.on.probe(id="talkingvideos")
def probe_known(memo: kopf.Memo, **_: Any) -> int:
    reconciler = memo.get("reconciler")
    return sum(1 for s in reconciler.objects.values() if s.tv) if isinstance(reconciler, Reconciler) else 0


@kopf.on.event(*TVS)
async def talkingvideo_event(type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    _reconciler(memo).on_talkingvideo((namespace or "", name), body, deleted=type == "DELETED")


@kopf.on.event(*JOBS, labels=OURS)
async def job_event(type: str, namespace: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    key = _owner(namespace, body.metadata)
    if key is not None:
        _reconciler(memo).on_job(key, body, deleted=type == "DELETED")


@kopf.on.event(*PODS, labels=OURS)
async def pod_event(type: str, namespace: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    reconciler = _reconciler(memo)
    # Pods of Jobs made before the annotation was on the pod template: found through their Job.
    key = _owner(namespace, body.metadata) or reconciler.owner_of_job(
        namespace or "", (body.metadata.labels or {}).get(job_builder.JOB_NAME_LABEL)
    )
    if key is not None:
        reconciler.on_pod(key, body, deleted=type == "DELETED")
