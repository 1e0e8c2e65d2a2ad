"""The reconcile loop: one record per TalkingVideo, fed by three watches, acting through kube.py.

Every trigger (a TalkingVideo, Job or pod event, the periodic resync, a progress read)
does the same thing: take the mirrored TalkingVideo, Job and pods, compute the status with
the pure status.compute_status, create the Job when none exists, and write the status
when it changed. Nothing depends on which trigger fired or in which order, so a restart
or a missed event only delays the answer.

API traffic (docs/design.md has the figures):
- Pods are watched, not listed: one cluster-wide (or per-namespace) watch with a
  server-side label selector delivers every runner pod's change. A Job's pods are LISTed
  only when the mirror cannot know them (a Job this process did not create: after a
  restart) and before a final or destructive decision the mirror cannot explain (the
  Job finished but its pod's exit has not arrived; the pending deadline passed).
- Events for one object are coalesced: a reconcile waits RECONCILE_DELAY_SECONDS
  after the first trigger and then reads whatever arrived meanwhile, so a pod going
  Pending -> Running -> Succeeded and its Job counting it costs one status write, not four.
- We are the only writer of .status: what we last wrote is fresher than a body the watch
  has not echoed yet, and the status is patched only when it changed.
- The resync recomputes from the mirrors (time-based transitions: the pending deadline);
  it makes no request of its own.
- Deletion: no finalizer. The DELETED event decides (cleanup.py) whether the render may have
  left resume checkpoints; if so its Job and pods stay mirrored until the garbage collector
  has removed them, and then one clean-up Job is created (nothing on the normal path).
- Progress without API access for the runner: while a pod runs, every
  `progress_poll_seconds` one small log read parses its last JSON progress line
  (runner/progress.py). The runner needs no token and no network path to the operator.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import time
from collections.abc import Coroutine
from typing import Any, cast

import kopf

from multitalk.operator import api, job_builder, metrics, mirror
from multitalk.operator.api_calls import API_CONCURRENCY, ApiCalls
from multitalk.operator.cleanup import PendingCleanup, cleanup_for
from multitalk.operator.conditions import ApiFailure, Event
from multitalk.operator.kube import ApiError, Kube
from multitalk.operator.mirror import JobBody, PodBody
from multitalk.operator.object_state import Key, ObjectState, may_have_pods, owner_uid
from multitalk.operator.observe import current_pod, job_facts, last_failed, pod_facts
from multitalk.operator.reasons import ApiCall, ConditionType, Phase, Reason
from multitalk.operator.settings import OperatorSettings
from multitalk.operator.status import Reconciliation, compute_status
from multitalk.operator.status_types import TalkingVideoStatus, read_status
from multitalk.runner.progress import Reading, parse_progress

log = logging.getLogger("multitalk.operator")

# Wait this long after an object's first trigger before reconciling it: its Job's and pod's
# updates arriving meanwhile are handled by that one reconcile (one status write, not four).
RECONCILE_DELAY_SECONDS = 0.5
# Resync and progress reconciles in flight at once: a resync of 1,000 objects queued at
# once on the reconcile slots would delay every watch-triggered reconcile behind it.
BACKGROUND_CONCURRENCY = 2


class Reconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.objects: dict[Key, ObjectState] = {}
        self._job_owners: dict[tuple[str, str], Key] = {}  # (namespace, Job name) -> its TalkingVideo
        self.phases = metrics.PhaseBook()
        self.stalled = metrics.KeySet(metrics.STALLED_JOBS)
        self.api = ApiCalls(kube)
        # Reconciles in flight: each holds its intermediate objects (a Job manifest, the
        # status) while it waits for the API; a burst of 1,000 must not hold them all.
        # Objects with a Job have slots of their own: a Job's completion must not wait
        # behind a burst of new objects whose Jobs are still to be created.
        self._reconcile_slots = asyncio.Semaphore(2 * API_CONCURRENCY)
        self._create_slots = asyncio.Semaphore(2 * API_CONCURRENCY)
        self._background_slots = asyncio.Semaphore(BACKGROUND_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- mirrors (called by the kopf handlers) ---------------------------------------------

    def on_talkingvideo(self, key: Key, body: Any, deleted: bool) -> None:
        if deleted:
            self._deleted(key, body)  # the garbage collector removes Job and pods
            return
        state = self._state(key)
        state.tv = mirror.talkingvideo(body, with_status=state.written is None)
        if state.written is None:
            state.remember(state.status())
        self.nudge(key)

    def on_job(self, key: Key, body: Any, deleted: bool) -> None:
        state = self._state(key)
        uid = (body.get("metadata") or {}).get("uid")
        current = state.job["metadata"].get("uid") if state.job is not None else None
        job_name = (key[0], str((body.get("metadata") or {}).get("name")))
        if deleted:
            self._job_owners.pop(job_name, None)
            if current == uid:
                state.job, state.pods_known = None, False
        else:
            if current != uid:
                state.pods_known = False  # a Job we did not create here (or a restart)
            state.job = mirror.job(body)
            self._job_owners[job_name] = key
        self._settle(key, state)

    def owner_of_job(self, namespace: str, job_name: str | None) -> Key | None:
        return self._job_owners.get((namespace, job_name)) if job_name else None

    def on_pod(self, key: Key, body: Any, deleted: bool) -> None:
        state = self._state(key)
        uid = str((body.get("metadata") or {}).get("uid"))
        if deleted:
            state.pods.pop(uid, None)
        else:
            state.pods[uid] = mirror.pod(body)
        self._settle(key, state)

    def _deleted(self, key: Key, body: Any) -> None:
        """Forget the object; keep mirroring its Job and pods when a clean-up waits for them."""
        old = self.objects.get(key)
        self._forget(key)
        if not self.settings.cleanup_on_delete:
            return
        body = dict(body or {})
        uid = str((body.get("metadata") or {}).get("uid") or "")
        # The DELETED event carries the last stored status (our last write included).
        status = read_status(body.get("status")) if body.get("status") else (old.status() if old else read_status(None))
        # A runner ran: one of its pods is mirrored, or its Job started (it has made a pod).
        runner_seen = old is not None and (
            bool(old.pods_of(uid)) or any(job["status"].get("startTime") for job in old.job_of(uid))
        )
        plan = cleanup_for(body, status, runner_seen, self.settings)
        if plan is None and not (old and old.cleanups):
            return
        state = self._state(key)
        if old is not None:  # what the watches still report about the children
            state.job, state.pods, state.pods_known, state.cleanups = old.job, old.pods, old.pods_known, old.cleanups
        if plan is not None:
            state.cleanups[plan.uid] = plan
        self._settle(key, state)

    def _forget(self, key: Key) -> None:
        self.objects.pop(key, None)
        self.phases.set(key, None)
        self.stalled.set(key, False)

    def _state(self, key: Key) -> ObjectState:
        return self.objects.setdefault(key, ObjectState())

    def _settle(self, key: Key, state: ObjectState) -> None:
        for uid in [uid for uid in state.cleanups if not state.job_of(uid) and not state.pods_of(uid)]:
            self._spawn(self._create_cleanup(key[0], state.cleanups.pop(uid)))
        if state.tv is not None:
            self.nudge(key)
        elif state.job is None and not state.pods and not state.cleanups:
            self.objects.pop(key, None)  # children of a TalkingVideo already gone: all deleted now

    async def _create_cleanup(self, namespace: str, plan: PendingCleanup) -> None:
        """One request; a failure is logged, not retried: the lifecycle rule is the backstop."""
        name = plan.manifest["metadata"]["name"]
        try:
            await self.api.call(ApiCall.CREATE_CLEANUP_JOB, self.kube.create_job(namespace, plan.manifest))
        except ApiError as exc:
            if exc.status != 409:  # 409: made already (the same DELETED event seen twice)
                log.warning("could not create clean-up Job %s/%s: %s", namespace, name, exc)
            return
        log.info("created clean-up Job %s/%s", namespace, name)

    # --- scheduling --------------------------------------------------------------------------

    def nudge(self, key: Key) -> None:
        """Reconcile `key` soon; triggers arriving before it runs join it."""
        state = self.objects.get(key)
        if state is None or state.tv is None or state.queued:
            return
        state.queued = True
        self._spawn(self._coalesced(key, state))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # A fresh context, not the kopf handler's that scheduled it: kopf's context variables
        # hold the watch event (its whole body) for as long as the task lives, and at a
        # burst each object waiting for a slot held one.
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _coalesced(self, key: Key, state: ObjectState) -> None:
        await asyncio.sleep(RECONCILE_DELAY_SECONDS)
        await self._guarded(key, read_progress=False)

    async def _guarded(self, key: Key, read_progress: bool) -> None:
        try:
            await self.reconcile(key, read_progress=read_progress)
        except ApiError as exc:
            # A read or the status write failed: no status can be written, an event can.
            log.warning("reconcile of %s/%s failed: %s", *key, exc)
            state = self.objects.get(key)
            if state is not None and state.tv is not None and exc.call is not None:
                failure = ApiFailure(exc.call, exc.status, exc.reason)
                if failure not in state.failed_calls:
                    state.failed_calls = (failure,)
                    message = f"{failure.call} failed: HTTP {failure.http_status} {failure.http_reason}".rstrip()
                    event = Event("Warning", Reason.API_CALL_FAILED, f"{message}; retried at the next resync")
                    self._spawn(self.api.post_events(dict(state.tv), [event]))
        except Exception:  # one object's failure must not stop the others; the resync retries
            log.exception("reconcile of %s/%s failed", *key)

    async def tick_forever(self) -> None:
        """Resync every object now and then, and read progress of running ones.

        A plain task instead of kopf timers: kopf puts a finalizer on every object with a
        timer, and a finalizer blocks namespace deletion whenever the operator is down.
        """
        tick = max(0.2, min(self.settings.resync_seconds, self.settings.progress_poll_seconds) / 2)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            due: list[tuple[Key, bool]] = []
            for key, state in list(self.objects.items()):
                if state.tv is None or state.queued:
                    continue
                if state.terminal and not state.failed_calls:
                    continue  # nothing can change any more but through a Job event
                if state.phase == Phase.RUNNING and now - state.last_progress >= self.settings.progress_poll_seconds:
                    state.last_progress = now
                    due.append((key, True))
                elif now - state.last_resync >= self.settings.resync_seconds:
                    due.append((key, False))
            if due:
                await asyncio.gather(*(self._in_background(key, progress, now) for key, progress in due))

    async def _in_background(self, key: Key, read_progress: bool, chosen: float) -> None:
        async with self._background_slots:
            state = self.objects.get(key)
            if state is None or (not read_progress and state.last_resync >= chosen):
                return  # gone, or reconciled by a watch event while it waited
            await self._guarded(key, read_progress)

    # --- one reconcile -----------------------------------------------------------------------

    async def reconcile(self, key: Key, *, read_progress: bool = False) -> Reconciliation | None:
        state = self.objects.get(key)
        if state is None or state.tv is None:
            return None
        slots = self._reconcile_slots if state.job is not None else self._create_slots
        async with slots, state.lock:
            # Triggers that arrived while this waited for a slot are read now; later ones
            # schedule a reconcile of their own.
            state.queued = False
            started = time.perf_counter()
            try:
                return await self._reconcile(key, state, read_progress)
            finally:
                state.last_resync = time.monotonic()
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _reconcile(self, key: Key, state: ObjectState, read_progress: bool) -> Reconciliation | None:
        assert state.tv is not None
        tv: dict[str, Any] = dict(state.tv)
        if state.written is not None:
            tv["status"] = state.written
        old = state.status()
        job = await self._job(key, state, old)
        pods, listed = await self._pods(key, state, job, fresh=False)
        progress = await self._progress(key[0], pods) if read_progress else None
        now = dt.datetime.now(dt.UTC)
        rec = compute_status(tv, job, pods, now, progress)
        # Why recompute: a final or destructive decision the mirror cannot explain is taken
        # on a fresh listing; a created Job is judged as it now exists.
        if job is not None and not listed and not self._explained(rec, old, job, pods):
            pods, _ = await self._pods(key, state, job, fresh=True)
            rec = compute_status(tv, job, pods, now, progress)
        # A refused action is recorded and fed back into the status: the rest of the status
        # (observedGeneration, the phase) is still written, and the resync retries it.
        failures: list[ApiFailure] = []
        if rec.create_job:
            try:
                created = await self._create_job(key, state)
            except ApiError as exc:
                failures.append(ApiFailure(ApiCall.CREATE_JOB, exc.status, exc.reason))
            else:
                if created is None:
                    return None  # deleted (or replaced) meanwhile: nothing to create or write
                job, pods = created, []
                rec = compute_status(tv, job, pods, now)
        if job is not None:
            name = job["metadata"]["name"]
            if rec.delete_job:
                failures += await self.api.attempt(ApiCall.DELETE_JOB, self.kube.delete_job(key[0], name))
            if rec.job_suspend is not None:
                failures += await self.api.attempt(
                    ApiCall.PATCH_JOB, self.kube.patch_job_suspend(key[0], name, rec.job_suspend)
                )
        if failures:
            rec = compute_status(tv, job, pods, now, progress, failures)
        await self._write(key, state, rec)
        state.failed_calls = tuple(failures)
        return rec

    async def _job(self, key: Key, state: ObjectState, old: TalkingVideoStatus) -> JobBody | None:
        """This object's Job: the mirror's, else (before anyone concludes it is gone) read by name."""
        assert state.tv is not None
        uid = state.tv["metadata"].get("uid", "")
        # A Job left by an earlier object of the same name is not ours.
        job = next(iter(state.job_of(uid)), None)
        # No shortcut for terminal objects: the Job settles after its target condition
        # (attempts, the last exit), and compute_status keeps a result once its Job is gone.
        if job is None and old.job is not None and not old.terminal:
            found = await self.api.call(ApiCall.GET_JOB, self.kube.get_job(key[0], old.job.name))
            if found is not None:
                job = state.job = mirror.job(found)
                state.pods_known = False
        return job

    async def _pods(self, key: Key, state: ObjectState, job: JobBody | None, fresh: bool) -> tuple[list[PodBody], bool]:
        """The Job's pods from the mirror, listed first when the mirror cannot know them (or
        `fresh`); and whether they were listed."""
        if job is None or not may_have_pods(job):
            return [], False
        listing = fresh or not state.pods_known
        if listing:
            listed = await self.api.call(ApiCall.LIST_PODS, self.kube.list_job_pods(key[0], job["metadata"]["name"]))
            for body in listed:
                uid = str(body["metadata"]["uid"])
                # A watch event may have brought a newer version meanwhile: it stays.
                state.pods.setdefault(uid, mirror.pod(body))
            state.pods_known = True
        return state.pods_of(owner_uid(job)), listing

    @staticmethod
    def _explained(rec: Reconciliation, old: TalkingVideoStatus, job: JobBody, pods: list[PodBody]) -> bool:
        """Can the mirror vouch for this decision? A pod's exit travels on another watch than
        its Job's count: a Job that reads finished before its pod does is listed once."""
        if rec.delete_job:
            return False
        if not rec.status.terminal or old.terminal:
            return True
        facts = [pod_facts(p) for p in pods]
        if rec.phase == Phase.SUCCEEDED:
            return any(p.exit_code == 0 for p in facts)
        return last_failed(facts) is not None or job_facts(job).failed_pods == 0

    async def _progress(self, namespace: str, pods: list[PodBody]) -> Reading | None:
        pod = current_pod([pod_facts(p) for p in pods])
        if pod is None or pod.phase != "Running":
            return None
        try:
            text = await self.api.call(
                ApiCall.POD_LOG,
                self.kube.pod_log_tail(
                    namespace, pod.name, job_builder.CONTAINER, 50, self.settings.progress_log_bytes
                ),
            )
        except ApiError as exc:  # the pod may end between its event and the log read
            log.debug("no log for %s/%s: %s", namespace, pod.name, exc.status)
            return None
        return parse_progress(text)

    async def _create_job(self, key: Key, state: ObjectState) -> JobBody | None:
        """Create the Job (or adopt the one there); None when the object is gone or going."""
        assert state.tv is not None
        meta = state.tv["metadata"]
        # The event that led here may be older than a deletion (the GPU would render for an
        # object nobody wants until the garbage collector came): ask the API server first.
        fresh = await self.api.call(ApiCall.GET_TALKINGVIDEO, self.kube.get_talkingvideo(*key))
        if not mirror.still_there(meta.get("uid"), fresh):
            log.info("not creating a Job for %s/%s: deleted or being deleted", *key)
            return None
        spec = api.parse_spec(state.tv.get("spec"))
        manifest = job_builder.build_job(state.tv, spec, self.settings)
        owner = {"apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND, "metadata": meta}
        kopf.append_owner_reference(manifest, owner=kopf.Body(cast(kopf.RawBody, owner)))
        try:
            created: dict[str, Any] = await self.api.call(
                ApiCall.CREATE_JOB, self.kube.create_job(key[0], manifest), expected=(409,)
            )
        except ApiError as exc:
            if exc.status != 409:
                raise
            # Already there (a restart, or a stale mirror): use it, never make a second one.
            existing = await self.api.call(ApiCall.GET_JOB, self.kube.get_job(key[0], manifest["metadata"]["name"]))
            if existing is None:
                raise
            state.job, state.pods_known = mirror.job(existing), False
            return state.job
        metrics.JOBS_CREATED.inc()
        log.info("created Job %s/%s", key[0], manifest["metadata"]["name"])
        # A new Job has no pods yet, and the pod watch runs: the mirror is complete from here.
        state.job, state.pods_known = mirror.job(created), True
        return state.job

    async def _write(self, key: Key, state: ObjectState, rec: Reconciliation) -> None:
        assert state.tv is not None
        new = rec.status.wire()
        old = state.written if state.written is not None else (state.tv.get("status") or {})
        if new != old:
            patch: dict[str, Any] = {k: None for k in old if k not in new}
            patch.update(new)
            try:
                await self.api.call(ApiCall.PATCH_STATUS, self.kube.patch_status(key[0], key[1], patch))
            except ApiError as exc:
                if exc.status == 404:  # deleted meanwhile
                    self._forget(key)
                    return
                raise
            state.written = new
            state.tv.pop("status", None)  # the mirror's copy is older
        state.remember(rec.status)
        self.phases.set(key, rec.phase)
        running = rec.status.condition(ConditionType.RUNNING)
        self.stalled.set(key, running is not None and running.reason == Reason.JOB_STALLED)
        if rec.events:
            # Posted off the object's lock: a slow events API must not delay the status.
            self._spawn(self.api.post_events(dict(state.tv), rec.events))
        for event in rec.events:
            if event.condition in (ConditionType.COMPLETE, ConditionType.FAILED) and event.status == "True":
                metrics.count_run(rec.status, event.reason)
