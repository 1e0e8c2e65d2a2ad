"""kopf handlers: level-triggered reconcile of TalkingVideos and their Jobs.

Every trigger (a TalkingVideo event, a Job event, the periodic resync, a progress read)
does the same thing: read the TalkingVideo, its Job and the Job's pods, compute the
status with the pure status.compute_status, create the Job when none exists, and write
the status when it changed. Nothing depends on which trigger fired or in which order, so
a restart or a missed event only delays the answer.

Design choices:
- Watch Jobs, not pods. kopf's label filters are client-side: watching pods would stream
  every pod of the cluster. Pod-level detail (image pulls, scheduling) is read by one
  labelled LIST per reconcile and caught by the periodic resync.
- Progress without API access for the runner: while a pod runs, a slow loop
  (MULTITALK_PROGRESS_POLL_SECONDS, 15 s) reads the last lines of its log and parses the
  last JSON progress line (runner/progress.py). The runner needs no token and no
  network path to the operator; the cost is one small log request per running render
  per poll, and progress lags by at most one poll.
- The watch streams' latest TalkingVideo and Job bodies are mirrored in memory, so a
  reconcile costs one LIST of pods plus the writes; a Job the mirror has not seen yet is
  read by name before anyone concludes it is gone, and a create that finds the Job
  already there (409) adopts it: never a second Job.
- Resync and progress polling run in one background task, not kopf timers: kopf adds a
  finalizer to every object that has a timer. Events are posted through the API client
  (kopf.event only works inside kopf's per-object tasks).
- ownerReferences via kopf.append_owner_reference, not kopf.adopt: adopt also copies all
  the owner's labels (Argo CD's app.kubernetes.io/instance would make Argo CD prune the
  Job); only allow-listed labels are copied (job_builder.copied_labels).
- No finalizer: deleting a TalkingVideo needs no cleanup beyond the garbage collector.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf

from multitalk.operator import api, job_builder, metrics
from multitalk.operator.kube import ApiException, Kube, load_config
from multitalk.operator.settings import OperatorSettings
from multitalk.operator.status import Event, Reconciliation, compute_status, current_pod
from multitalk.runner.progress import parse_progress

log = logging.getLogger("multitalk.operator")

SETTINGS = OperatorSettings()
TV = (api.GROUP, api.VERSION, api.PLURAL)
JOBS = ("batch", "v1", "jobs")
OUR_JOBS = {job_builder.LABEL_MANAGED_BY: "multitalk-operator"}
Key = tuple[str, str]


def configure(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf settings: our own annotation prefix, watch timeouts, quieter event posting."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"  # never added: no deletion handlers
    settings.watching.server_timeout = ours.watch_server_timeout
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 30
    # Our own events say what happened; kopf's per-handler log events would be noise.
    settings.posting.level = logging.WARNING
    settings.posting.event_name_prefix = "multitalk-"


class Reconciler:
    """Per-process state: the API client, per-object locks and the last status written."""

    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.locks: defaultdict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        # We are the only writer of .status: what we last wrote is fresher than a body the
        # watch stream has not delivered yet.
        self.written: dict[Key, dict[str, Any]] = {}
        self.phases = metrics.PhaseBook()
        # Mirrors of the watch streams (kopf.on.event): the latest TalkingVideo and Job bodies.
        self.tvs: dict[Key, dict[str, Any]] = {}
        self.jobs: dict[Key, dict[str, Any]] = {}
        # The Job's pods as last listed, keyed by the Job's uid and resourceVersion: the Job
        # controller updates the Job whenever an attempt starts, gets ready or ends, so an
        # unchanged Job means the listing is still good enough; the resync lists afresh.
        self.pods: dict[Key, tuple[tuple[str, str], list[dict[str, Any]]]] = {}
        self.last_resync: dict[Key, float] = {}
        self.last_progress: dict[Key, float] = {}
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._event_slots = asyncio.Semaphore(8)

    def forget(self, key: Key) -> None:
        for table in (self.written, self.locks, self.tvs, self.jobs, self.pods, self.last_resync, self.last_progress):
            table.pop(key, None)
        self.phases.set(key, None)

    async def reconcile_key(self, key: Key, *, read_progress: bool = False, fresh: bool = False) -> None:
        tv = self.tvs.get(key)
        if tv is not None:
            # The resync clock runs from the last pod listing (_reconcile), not the last event.
            self.last_resync.setdefault(key, time.monotonic())
            await self.reconcile(key[0], key[1], tv, self.jobs.get(key), read_progress=read_progress, fresh=fresh)

    async def tick_forever(self) -> None:
        """Resync every object now and then, and read progress of running ones.

        A plain task instead of kopf timers: kopf puts a finalizer on every object with a
        timer, and a finalizer blocks namespace deletion whenever the operator is down.
        """
        tick = max(0.2, min(self.settings.resync_seconds, self.settings.progress_poll_seconds) / 2)
        limit = asyncio.Semaphore(16)

        async def one(key: Key, progress: bool, fresh: bool) -> None:
            async with limit:
                try:
                    await self.reconcile_key(key, read_progress=progress, fresh=fresh)
                except Exception:  # one object's failure must not stop the loop
                    log.exception("resync of %s/%s failed", *key)

        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            due: list[tuple[Key, bool, bool]] = []
            for key, tv in list(self.tvs.items()):
                status = self.written.get(key) or tv.get("status") or {}
                phase = status.get("phase")
                if phase in ("Succeeded", "Failed"):
                    continue  # terminal: nothing can change any more
                if phase == "Running" and now - self.last_progress.get(key, 0.0) >= self.settings.progress_poll_seconds:
                    self.last_progress[key] = now
                    # The log read names the pod; the pods are listed afresh only once a resync is due.
                    stale = now - self.last_resync.get(key, now) >= self.settings.resync_seconds
                    due.append((key, True, stale))
                elif now - self.last_resync.get(key, now) >= self.settings.resync_seconds:
                    due.append((key, False, True))
            if due:
                await asyncio.gather(*(one(key, progress, fresh) for key, progress, fresh in due))

    async def reconcile(
        self,
        namespace: str,
        name: str,
        tv: dict[str, Any],
        job: dict[str, Any] | None,
        *,
        read_progress: bool = False,
        fresh: bool = True,
    ) -> Reconciliation | None:
        key = (namespace, name)
        async with self.locks[key]:
            started = time.perf_counter()
            try:
                return await self._reconcile(key, tv, job, read_progress, fresh)
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _reconcile(
        self, key: Key, tv: dict[str, Any], job: dict[str, Any] | None, read_progress: bool, fresh: bool
    ) -> Reconciliation | None:
        namespace = key[0]
        meta = tv.get("metadata") or {}
        uid = meta.get("uid", "")
        if key in self.written:
            tv = {**tv, "status": self.written[key]}
        old_status: dict[str, Any] = tv.get("status") or {}
        # A Job left by an earlier object of the same name is not ours.
        if job is not None and (job.get("metadata", {}).get("labels") or {}).get(job_builder.LABEL_TV_UID) != uid:
            job = None
        terminal = any(
            c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
            for c in old_status.get("conditions") or []
        )
        # No shortcut for terminal objects: the Job settles after its target condition
        # (attempts, the last exit), and compute_status keeps a result once its Job is gone.
        recorded = (old_status.get("job") or {}).get("name")
        if job is None and recorded and not terminal:
            job = await self._call("get_job", self.kube.get_job(namespace, recorded))

        pods, cached = await self._pods(key, job, fresh)
        progress = await self._progress(namespace, pods) if read_progress else None

        now = dt.datetime.now(dt.UTC)
        rec = compute_status(tv, job, pods, now, progress)
        if cached and (rec.delete_job or (_final(rec.status) and not terminal)):
            # Final or destructive decisions are taken on a fresh listing, never a cached one.
            pods, _ = await self._pods(key, job, True)
            rec = compute_status(tv, job, pods, now, progress)
        if rec.create_job:
            job = await self._create_job(tv)
            rec = compute_status(tv, job, [], now)
        if rec.delete_job and job is not None:
            await self._call("delete_job", self.kube.delete_job(namespace, job["metadata"]["name"]))
        if rec.job_suspend is not None and job is not None:
            await self._call(
                "patch_job", self.kube.patch_job_suspend(namespace, job["metadata"]["name"], rec.job_suspend)
            )
        await self._write(key, tv, old_status, rec)
        return rec

    async def _pods(self, key: Key, job: dict[str, Any] | None, fresh: bool) -> tuple[list[dict[str, Any]], bool]:
        """The Job's pods and whether they came from the cache (same Job resourceVersion)."""
        if job is None or not _may_have_pods(job):
            return [], False
        job_meta = job["metadata"]
        version = (str(job_meta.get("uid")), str(job_meta.get("resourceVersion")))
        cached = self.pods.get(key)
        if not fresh and cached is not None and cached[0] == version:
            return cached[1], True
        listed = await self._call("list_pods", self.kube.list_job_pods(key[0], job_meta["name"]))
        pods = [_pod_essentials(p) for p in listed]
        self.pods[key] = (version, pods)
        self.last_resync[key] = time.monotonic()
        return pods, False

    async def _call(self, operation: str, coro: Any) -> Any:
        try:
            return await coro
        except ApiException:
            metrics.API_ERRORS.labels(operation=operation).inc()
            raise

    async def _progress(self, namespace: str, pods: list[dict[str, Any]]) -> tuple[str, float] | None:
        pod = current_pod(pods)
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return None
        try:
            text = await self.kube.pod_log_tail(
                namespace, pod["metadata"]["name"], job_builder.CONTAINER, 50, self.settings.progress_log_bytes
            )
        except ApiException as exc:  # the pod may end between LIST and the log read
            log.debug("no log for %s/%s: %s", namespace, pod["metadata"]["name"], exc.status)
            return None
        return parse_progress(text)

    async def _create_job(self, tv: dict[str, Any]) -> dict[str, Any]:
        meta = tv["metadata"]
        spec = api.parse_spec(tv.get("spec"))
        manifest = job_builder.build_job(tv, spec, self.settings)
        owner = {"apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND, "metadata": meta}
        kopf.append_owner_reference(manifest, owner=kopf.Body(cast(kopf.RawBody, owner)))
        try:
            created: dict[str, Any] = await self.kube.create_job(meta["namespace"], manifest)
        except ApiException as exc:
            if exc.status != 409:
                metrics.API_ERRORS.labels(operation="create_job").inc()
                raise
            # Already there (a restart, or a stale mirror): use it, never make a second one.
            existing: dict[str, Any] | None = await self._call(
                "get_job", self.kube.get_job(meta["namespace"], manifest["metadata"]["name"])
            )
            if existing is None:
                raise
            return existing
        metrics.JOBS_CREATED.inc()
        log.info("created Job %s/%s", meta["namespace"], manifest["metadata"]["name"])
        return created

    async def _write(self, key: Key, tv: dict[str, Any], old: dict[str, Any], rec: Reconciliation) -> None:
        new = rec.status
        if new != old:
            patch: dict[str, Any] = {k: None for k in old if k not in new}
            patch.update(new)
            try:
                await self.kube.patch_status(key[0], key[1], patch)
            except ApiException as exc:
                if exc.status == 404:  # deleted meanwhile
                    self.forget(key)
                    return
                metrics.API_ERRORS.labels(operation="patch_status").inc()
                raise
            self.written[key] = new
        self.phases.set(key, new.get("phase"))
        if rec.events:
            # Posted off the object's lock: a slow events API must not delay the status.
            task = asyncio.create_task(self._post_events(tv, rec.events))
            self._event_tasks.add(task)
            task.add_done_callback(self._event_tasks.discard)
        for event in rec.events:
            if event.condition in ("Complete", "Failed") and event.status == "True":
                self._count_run(new, event.reason)

    async def _post_events(self, tv: dict[str, Any], events: list[Event]) -> None:
        meta = tv["metadata"]
        async with self._event_slots:
            for event in events:
                try:
                    await self.kube.post_event(tv, event.type, event.reason, event.message)
                except ApiException as exc:  # an event is not worth failing anything
                    metrics.API_ERRORS.labels(operation="post_event").inc()
                    log.warning(
                        "could not post event %s on %s/%s: %s",
                        event.reason,
                        meta["namespace"],
                        meta["name"],
                        exc.status,
                    )

    @staticmethod
    def _count_run(status: dict[str, Any], reason: str) -> None:
        engine = (status.get("engine") or {}).get("name") or "unknown"
        result = "succeeded" if status.get("phase") == "Succeeded" else "failed"
        metrics.RUNS.labels(engine=engine, result=result, reason=reason).inc()
        queue = (status.get("timings") or {}).get("queueSeconds")
        if queue is not None:
            metrics.QUEUE_SECONDS.observe(queue)
        if status.get("durationSeconds") is not None:
            metrics.RENDER_SECONDS.labels(engine=engine).observe(status["durationSeconds"])


def _job_essentials(body: kopf.Body) -> dict[str, Any]:
    """What compute_status reads from a Job; the pod template (with the request) stays out of memory."""
    meta = body.get("metadata") or {}
    return {
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "creationTimestamp")
            if k in meta
        },
        "spec": {"suspend": (body.get("spec") or {}).get("suspend")},
        "status": dict(body.get("status") or {}),
    }


def _pod_essentials(pod: dict[str, Any]) -> dict[str, Any]:
    """What compute_status reads from a pod (kept per object between Job changes)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    return {
        "metadata": {k: meta[k] for k in ("name", "creationTimestamp", "deletionTimestamp") if k in meta},
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [
                {"name": c.get("name"), "resources": c.get("resources")} for c in spec.get("containers") or []
            ],
        },
        "status": pod.get("status") or {},
    }


def _tv_essentials(body: kopf.Body) -> dict[str, Any]:
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    return {"metadata": meta, "spec": body.get("spec"), "status": body.get("status")}


def _final(status: dict[str, Any]) -> bool:
    return status.get("phase") in ("Succeeded", "Failed")


def _may_have_pods(job: dict[str, Any]) -> bool:
    """A Job still waiting in its queue has never had pods: skip the LIST (most objects, at scale)."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    never_ran = not any(status.get(k) for k in ("startTime", "active", "failed", "succeeded", "terminating"))
    return not (spec.get("suspend") and never_ran)


def _state(memo: Any) -> Reconciler:
    state: Reconciler = memo["reconciler"]
    return state


# --- kopf registrations ---------------------------------------------------------------------


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings, SETTINGS)
    # The kubernetes client blocks: its calls run in threads, as many as pooled connections.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=16, thread_name_prefix="kube"))
    reconciler = Reconciler(Kube(load_config(pool_size=16)), SETTINGS)
    memo["reconciler"] = reconciler
    memo["ticker"] = asyncio.create_task(reconciler.tick_forever(), name="multitalk resync/progress")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ticker = memo.get("ticker")
    if isinstance(ticker, asyncio.Task):
        ticker.cancel()
    reconciler = memo.get("reconciler")
    if isinstance(reconciler, Reconciler):
        reconciler.kube.api_client.close()


@kopf.on.probe(id="talkingvideos")
def probe_known(memo: kopf.Memo, **_: Any) -> int:
    reconciler = memo.get("reconciler")
    return len(reconciler.tvs) if isinstance(reconciler, Reconciler) else 0


@kopf.on.event(*TV)
async def talkingvideo_event(type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    reconciler = _state(memo)
    key = (namespace or "", name)
    if type == "DELETED":
        reconciler.forget(key)  # the garbage collector removes Job and pod
        return
    reconciler.tvs[key] = _tv_essentials(body)
    await reconciler.reconcile_key(key)


@kopf.on.event(*JOBS, labels=OUR_JOBS)
async def job_event(type: str, namespace: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    owner = (body.metadata.annotations or {}).get(job_builder.ANNOTATION_TV_NAME)
    if not owner:
        return
    reconciler = _state(memo)
    key = (namespace or "", owner)
    if type == "DELETED":
        if reconciler.jobs.get(key, {}).get("metadata", {}).get("uid") == body.metadata.uid:
            reconciler.jobs.pop(key, None)
    else:
        reconciler.jobs[key] = _job_essentials(body)
    if key in reconciler.tvs:  # else the TalkingVideo is gone: the garbage collector takes the Job
        await reconciler.reconcile_key(key)
