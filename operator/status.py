"""TalkingVideo + its Job + the Job's pods (+ now) -> status, events and actions (pure).

Level-triggered: the status is recomputed from what exists, never from a remembered
sequence of events, so a restarted operator or a missed watch event converges to the
same answer. Two facts are remembered from the previous status because nothing else
records them: that a Job was created (so a vanished Job reads JobDeleted, not "create
one"), and a terminal result (Complete/Failed never revert, and survive the Job's TTL).

The Job is the source of truth for success and failure; the pod explains why (waiting
reasons, OOM kills, the runner's result JSON in its termination message). Reading order:
compute_status, then one function per part of the status below it; the conditions
themselves are conditions.py, the readers of Job and pods observe.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multitalk.operator import api, conditions
from multitalk.operator.conditions import ApiFailure, Event, Outcome, Verdict
from multitalk.operator.job_builder import request_hash
from multitalk.operator.observe import (
    JobFacts,
    PodFacts,
    current_pod,
    describe_pod_failure,
    job_facts,
    last_failed,
    latest_result,
    pod_facts,
    queue_seconds,
)
from multitalk.operator.reasons import ConditionStatus, ConditionType, Phase, Reason
from multitalk.operator.status_types import (
    Attempts,
    JobRef,
    LastFailure,
    PodRef,
    Progress,
    StatusTimings,
    TalkingVideoStatus,
    read_status,
)
from multitalk.operator.times import format_time, human_duration, parse_time
from multitalk.runner.progress import Reading, Stage
from multitalk.runner.result import RunResult

Obj = Mapping[str, Any]


@dataclass
class Reconciliation:
    """What the reconciler should write and do."""

    status: TalkingVideoStatus
    events: list[Event] = field(default_factory=list)
    create_job: bool = False  # no Job yet and one should exist
    delete_job: bool = False  # pendingDeadlineSeconds passed: free the queue slot / GPU
    job_suspend: bool | None = None  # patch the Job's spec.suspend to this (no Kueue queue only)

    @property
    def phase(self) -> Phase | None:
        return self.status.phase


def compute_status(
    tv: Obj,
    job: Obj | None,
    pods: Sequence[Obj],
    now: dt.datetime,
    progress: Reading | None = None,
    failures: Sequence[ApiFailure] = (),
) -> Reconciliation:
    """The whole status of a TalkingVideo from its objects; see the module docstring.
    `failures`: calls the reconciler made for an earlier result and the API server refused."""
    old = read_status(tv.get("status"))
    generation = (tv.get("metadata") or {}).get("generation")
    # A finished render whose Job is gone (TTL, or deleted after the end) stays as it was.
    if old.terminal and job is None:
        return Reconciliation(status=old.model_copy(update={"observed_generation": generation}))
    spec: api.TalkingVideoSpec | None = None
    spec_error = ""
    try:
        spec = api.parse_spec(tv.get("spec"))
    except api.InvalidSpecError as exc:
        spec_error = str(exc)  # with a Job: it renders the spec it was built from (below)
    if job is None:
        return _without_job(old, generation, spec, spec_error, now, failures)
    facts = [pod_facts(p) for p in pods]
    return _with_job(tv, old, generation, spec, job_facts(job), facts, now, progress, failures)


def _without_job(
    old: TalkingVideoStatus,
    generation: int | None,
    spec: api.TalkingVideoSpec | None,
    error: str,
    now: dt.datetime,
    failures: Sequence[ApiFailure],
) -> Reconciliation:
    stamp = format_time(now)
    if spec is None:
        refused, failed = conditions.invalid_spec(error)
        status = TalkingVideoStatus(
            last_failure=LastFailure(reason=Reason.INVALID_SPEC, message=failed.message, time=stamp),
            completion_time=old.completion_time or stamp,
        )
        return _finish(status, [refused, failed], old, generation, now)
    verdicts = [conditions.accepted()]
    rec_create = False
    if old.job is not None and not old.terminal:
        failed = conditions.job_deleted(old.job.name)
        verdicts.append(failed)
        kept = old.model_dump(
            include={
                "start_time",
                "pod",
                "attempts",
                "engine",
                "timings",
                "audio",
                "resume",
                "progress",
                "progress_text",
            }
        )
        status = TalkingVideoStatus(
            **kept,
            job=old.job,
            last_failure=LastFailure(reason=Reason.JOB_DELETED, message=failed.message, time=stamp),
            completion_time=stamp,
        )
    elif spec.suspend:
        verdicts.append(conditions.held_by_spec())
        status = TalkingVideoStatus()
    else:
        verdicts.append(conditions.job_pending())
        status, rec_create = TalkingVideoStatus(), True
    rec = _finish(status, verdicts, old, generation, now, failures=failures)
    rec.create_job = rec_create
    return rec


def _with_job(
    tv: Obj,
    old: TalkingVideoStatus,
    generation: int | None,
    spec: api.TalkingVideoSpec | None,
    job: JobFacts,
    pods: Sequence[PodFacts],
    now: dt.datetime,
    progress: Reading | None,
    failures: Sequence[ApiFailure],
) -> Reconciliation:
    events: list[Event] = []
    changed = spec is None or (job.request_hash is not None and job.request_hash != request_hash(spec))
    accepted = conditions.accepted_by_job(changed)
    if changed and old.observed_generation != generation:
        events.append(Event("Warning", accepted.reason, accepted.message))  # once per generation

    pod = current_pod(pods)
    result = latest_result(pods)
    # Succeeded and its output are written together: while the Job reads succeeded but no
    # attempt's runner shows its exit yet (the pod status lags, or a stale read), wait for it.
    collecting = job.succeeded and result is None and bool(pods) and not any(p.exit_code == 0 for p in pods)
    stalled = conditions.stalled_for(job, pods, now)
    running = conditions.running(job, pod, collecting, had_pod=old.pod is not None, stalled_seconds=stalled)
    verdicts = [accepted, conditions.admitted(job), running]

    failed_pod = last_failed(pods)
    last_failure = describe_pod_failure(failed_pod) if failed_pod is not None else None
    outcome = _outcome(job, spec, pods, result, old, running, collecting, last_failure, now)
    if outcome is not None:
        verdicts.append(outcome.verdict)
        last_failure = outcome.last_failure or last_failure
        if outcome.give_up:
            verdicts[2] = conditions.given_up(running)

    status = TalkingVideoStatus(
        job=JobRef(name=job.name),
        attempts=Attempts(failed=job.failed_pods, active=job.active_pods),
        pod=PodRef(name=pod.name, node_name=pod.node_name) if pod is not None else None,
        **_results(tv, old, result, pods),
        completion_time=outcome.completion_time if outcome is not None else None,
        last_failure=last_failure,
    )
    status = _times(status, old, job, now, progress)
    status = _progress(status, old, {v.type: v for v in verdicts}, collecting, progress)
    rec = _finish(status, verdicts, old, generation, now, events, failures)
    rec.delete_job = outcome is not None and outcome.give_up
    # Without a queue, spec.suspend drives the Job's suspend; with Kueue, Kueue owns it.
    if spec is not None and not job.queue and not job.finished and spec.suspend != job.spec_suspend:
        rec.job_suspend = spec.suspend
    return rec


def _outcome(
    job: JobFacts,
    spec: api.TalkingVideoSpec | None,
    pods: Sequence[PodFacts],
    result: RunResult | None,
    old: TalkingVideoStatus,
    running: Verdict,
    collecting: bool,
    last_failure: LastFailure | None,
    now: dt.datetime,
) -> Outcome | None:
    """Complete or Failed once the render ended, or Failed when it waited too long to start."""
    if job.succeeded and not collecting:
        return conditions.rendered(job, result, old, pods_gone=not pods, now=now)
    if job.failed:
        return conditions.job_failed(job, last_failure, now)
    if collecting or spec is None or job.suspended or running.status != ConditionStatus.FALSE:
        return None
    return conditions.pending_too_long(job, pods, running, spec.pending_deadline_seconds, now)


def _results(tv: Obj, old: TalkingVideoStatus, result: RunResult | None, pods: Sequence[PodFacts]) -> dict[str, Any]:
    """engine, timings, audio, output, resume: the newest result JSON's, else what the status had."""
    if result is not None:
        found: dict[str, Any] = {
            "engine": result.engine,
            "timings": StatusTimings.model_validate(result.timings.model_dump()),
            "audio": result.audio,
            "output": result.output,
            "resume": result.resume,
        }
    else:
        found = {
            "engine": old.engine,
            "timings": old.timings,
            "audio": old.audio,
            "output": old.output,
            "resume": old.resume,
        }
    waited = queue_seconds(tv, pods)
    if waited is not None:
        timings = found["timings"] or StatusTimings()
        found["timings"] = timings.model_copy(update={"queue_seconds": round(waited, 3)})
    return found


def _times(
    status: TalkingVideoStatus,
    old: TalkingVideoStatus,
    job: JobFacts,
    now: dt.datetime,
    progress: Reading | None,
) -> TalkingVideoStatus:
    if job.start_time is None:
        return status
    update: dict[str, Any] = {"start_time": format_time(job.start_time)}
    end = parse_time(status.completion_time)
    if end is not None or progress is not None:
        seconds = round(max(0.0, ((end or now) - job.start_time).total_seconds()), 3)
        update |= {"duration_seconds": seconds, "duration": human_duration(seconds)}
    else:
        # A running duration moves with the clock: it is refreshed with each progress read
        # only, else every recompute (each one echoed by the watch) would write the status.
        update |= {"duration_seconds": old.duration_seconds, "duration": old.duration}
    return status.model_copy(update=update)


def _progress(
    status: TalkingVideoStatus,
    old: TalkingVideoStatus,
    verdicts: Mapping[ConditionType, Verdict],
    collecting: bool,
    progress: Reading | None,
) -> TalkingVideoStatus:
    running = verdicts[ConditionType.RUNNING].status == ConditionStatus.TRUE
    reading: Progress | None = None
    if ConditionType.COMPLETE in verdicts:
        reading = Progress(stage=Stage.DONE, percent=100.0)
    elif progress is not None and running:
        windows = progress.windows
        reading = Progress(
            stage=progress.stage,
            percent=round(min(100.0, max(0.0, progress.percent)), 1),
            windows_done=windows.done if windows else None,
            windows_total=windows.total if windows else None,
            resumed_from_frame=windows.resumed_from_frame if windows else None,
        )
    elif old.progress is not None and (running or collecting or ConditionType.FAILED in verdicts):
        reading = old.progress  # read on a slow timer: keep the last reading
    if reading is None:
        return status
    return status.model_copy(update={"progress": reading, "progress_text": reading.text})


def _finish(
    status: TalkingVideoStatus,
    verdicts: Sequence[Verdict],
    old: TalkingVideoStatus,
    generation: int | None,
    now: dt.datetime,
    events: list[Event] | None = None,
    failures: Sequence[ApiFailure] = (),
) -> Reconciliation:
    """Conditions (with transition times and events), phase and message onto the status."""
    own = conditions.with_api_failures(conditions.with_placeholders({v.type: v for v in verdicts}), failures)
    phase = conditions.derive_phase(own)
    conds, transitions = conditions.set_conditions(own, phase, old, generation, now)
    status = status.model_copy(
        update={
            "observed_generation": generation,
            "conditions": conds,
            "phase": phase,
            "message": conditions.summary(phase, own),
        }
    )
    return Reconciliation(status=status, events=[*(events or []), *transitions])
