"""One function per condition: what the objects say -> a Verdict (type, status, reason, message).

status.compute_status calls them in order and turns the verdicts into metav1.Conditions
(`set_conditions`: transition times, observedGeneration, events). The kstatus conditions
(Ready, Reconciling, Stalled) are derived from the phase, so GitOps tools read the same
answer as `kubectl wait` users.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from multitalk.operator.observe import (
    CONFIG_ERROR_REASONS,
    IMAGE_PULL_REASONS,
    JobFacts,
    PodFacts,
    last_pod_activity,
    pending_since,
)
from multitalk.operator.reasons import (
    NOTABLE,
    OWN_CONDITIONS,
    PERMANENT_FAILURES,
    WARNING,
    ApiCall,
    ConditionStatus,
    ConditionType,
    Phase,
    Reason,
)
from multitalk.operator.status_types import Condition, LastFailure, TalkingVideoStatus
from multitalk.operator.times import format_time, human_duration
from multitalk.runner.result import RunResult

T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
# A Job that failed below its backoffLimit normally makes its next pod within seconds (its
# back-off starts at 10 s and doubles: 2 min covers the first few retries); longer without
# any pod and it is reported stalled (it would otherwise wait for pendingDeadlineSeconds).
STALL_SECONDS = 120.0


@dataclass(frozen=True)
class Verdict:
    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
    condition: ConditionType | None = None  # the condition whose change this reports
    status: ConditionStatus | None = None


def accepted(type_: ConditionType = ConditionType.ACCEPTED) -> Verdict:
    return Verdict(type_, T, Reason.VALID, "the spec is valid")


# --- without a Job ----------------------------------------------------------------------------


def invalid_spec(error: str) -> tuple[Verdict, Verdict]:
    """Accepted=False and Failed=True: the spec cannot be rendered."""
    message = f"the spec cannot be rendered: {error}"
    return (
        Verdict(ConditionType.ACCEPTED, F, Reason.INVALID_SPEC, message),
        Verdict(ConditionType.FAILED, T, Reason.INVALID_SPEC, message),
    )


def job_deleted(job_name: str) -> Verdict:
    return Verdict(
        ConditionType.FAILED,
        T,
        Reason.JOB_DELETED,
        f"the Job {job_name} was deleted before the render finished; create a new TalkingVideo to render again",
    )


def held_by_spec() -> Verdict:
    return Verdict(ConditionType.ADMITTED, F, Reason.SUSPENDED, "spec.suspend is true: no Job is created")


def job_pending() -> Verdict:
    return Verdict(ConditionType.ADMITTED, U, Reason.JOB_PENDING, "creating the Job")


# --- with a Job -------------------------------------------------------------------------------


def accepted_by_job(spec_changed: bool) -> Verdict:
    if spec_changed:
        return Verdict(
            ConditionType.ACCEPTED,
            T,
            Reason.SPEC_CHANGE_IGNORED,
            "the spec changed after the Job was created; the Job renders the original spec. "
            "A new render is a new TalkingVideo",
        )
    return Verdict(ConditionType.ACCEPTED, T, Reason.VALID, "the spec is valid; the Job renders it")


def admitted(job: JobFacts) -> Verdict:
    if job.suspended and job.queue:
        return Verdict(
            ConditionType.ADMITTED,
            F,
            Reason.QUEUED_IN_KUEUE,
            f"waiting for Kueue to admit the Job in queue {job.queue}",
        )
    if job.suspended:
        return Verdict(ConditionType.ADMITTED, F, Reason.SUSPENDED, "the Job is suspended (spec.suspend)")
    message = f"admitted by Kueue (queue {job.queue})" if job.queue else "the Job may start"
    return Verdict(ConditionType.ADMITTED, T, Reason.ADMITTED, message)


def stalled_for(job: JobFacts, pods: Sequence[PodFacts], now: dt.datetime) -> float | None:
    """Seconds since the last attempt of a Job that should be retrying but makes no new pod
    (failed below backoffLimit, nothing active or live, not finished) once past STALL_SECONDS."""
    if job.finished or job.suspended or job.active_pods or not job.failed_pods:
        return None
    if job.failed_pods > job.backoff_limit or any(p.live or p.phase == "Succeeded" for p in pods):
        return None
    since = last_pod_activity(pods) or job.start_time
    if since is None:
        return None
    seconds = (now - since).total_seconds()
    return seconds if seconds > STALL_SECONDS else None


def running(
    job: JobFacts, pod: PodFacts | None, collecting: bool, had_pod: bool, stalled_seconds: float | None = None
) -> Verdict:
    """Is the runner container running, and if not, what holds it?"""

    def no(reason: Reason, message: str, status: ConditionStatus = F) -> Verdict:
        return Verdict(ConditionType.RUNNING, status, reason, message)

    if collecting:
        return no(
            Reason.COLLECTING_RESULT, "the Job succeeded; waiting for the runner's exit and result JSON on its pod"
        )
    if job.finished:
        return no(Reason.FINISHED, "the runner has finished")
    if job.suspended:
        return no(Reason.NOT_ADMITTED, "the Job is not admitted yet")
    if pod is not None and pod.node_lost:
        why = pod.disruption or pod.message or "the node is lost"
        return no(Reason.NODE_LOST, f"pod {pod.name} was disrupted: {why}; it does not count as a retry", U)
    if stalled_seconds is not None:
        # Whole minutes: the message (and so the status) changes once a minute, not every resync.
        waited = human_duration(stalled_seconds // 60 * 60)
        return no(
            Reason.JOB_STALLED,
            f"the Job has made no new pod for {waited} since the last attempt ended "
            f"({job.failed_pods} failed, backoffLimit {job.backoff_limit}); it should have started another",
        )
    if pod is None and not had_pod and not job.failed_pods:
        return no(Reason.POD_PENDING, "waiting for the Job to create the runner pod")
    if pod is None or pod.deleting:
        return no(Reason.POD_MISSING, "the runner pod is gone (deleted?); the Job creates a replacement")
    if pod.phase == "Succeeded":
        return no(Reason.FINISHED, "the runner has finished; the Job is counting its exit")
    if pod.phase == "Failed":
        return no(Reason.RETRYING, "the last attempt failed; the Job starts another (see lastFailure)")
    if pod.phase == "Running" and pod.running:
        where = f"rendering on node {pod.node_name}" if pod.node_name else "rendering"
        return Verdict(ConditionType.RUNNING, T, Reason.POD_RUNNING, where)
    waiting = pod.waiting_message or pod.waiting_reason
    if pod.waiting_reason in IMAGE_PULL_REASONS:
        return no(Reason.IMAGE_PULL_BACK_OFF, f"cannot pull the runner image: {waiting}")
    if pod.waiting_reason in CONFIG_ERROR_REASONS:
        return no(
            Reason.CONTAINER_CONFIG_ERROR,
            f"the runner container cannot be created: {waiting} "
            "(is the S3 Secret there, with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY?)",
        )
    if pod.unschedulable is not None:
        return no(Reason.UNSCHEDULABLE, f"no node fits the runner: {pod.unschedulable}".rstrip(": "))
    return no(Reason.POD_PENDING, "the runner pod is starting")


@dataclass(frozen=True)
class Outcome:
    """Complete or Failed, when the render ended (or was given up)."""

    verdict: Verdict
    completion_time: str
    last_failure: LastFailure | None = None
    give_up: bool = False  # pendingDeadlineSeconds passed: delete the Job, Running=Finished


def rendered(
    job: JobFacts, result: RunResult | None, old: TalkingVideoStatus, pods_gone: bool, now: dt.datetime
) -> Outcome:
    if result is not None and result.output is not None:
        out = result.output
        message = f"wrote {out.uri} ({out.duration_seconds:.1f} s, {out.frames} frames)"
    elif (
        old.output is not None and (before := old.condition(ConditionType.COMPLETE)) is not None and before.status == T
    ):
        message = before.message or "the Job succeeded"  # its pod is gone since
    elif pods_gone:
        message = "the Job succeeded; its pod is gone, so engine, timings and output are unknown"
    else:
        message = "the Job succeeded"
    verdict = Verdict(ConditionType.COMPLETE, T, Reason.RENDERED, message)
    return Outcome(verdict, job.completion_time or format_time(now))


def job_failed(job: JobFacts, last_failure: LastFailure | None, now: dt.datetime) -> Outcome:
    """The Job failed: the runner's own reason wins over the Job's, a permanent one over backoff."""
    when = job.failure_time or format_time(now)
    reason, message = job.failure_reason, job.failure_message
    if reason == Reason.DEADLINE_EXCEEDED:
        message = f"the render ran past activeDeadlineSeconds: {message}".rstrip(": ")
    elif last_failure is not None:
        said = f"{last_failure.field}: {last_failure.message}" if last_failure.field else last_failure.message
        if reason == Reason.BACKOFF_LIMIT_EXCEEDED and last_failure.reason not in PERMANENT_FAILURES:
            message = f"the runner failed too often (backoffLimit); last attempt: {said}"
        else:
            reason, message = last_failure.reason, said
    elif reason == Reason.BACKOFF_LIMIT_EXCEEDED:
        message = f"the runner failed too often (backoffLimit) {message}".strip()
    else:
        message = message or "the Job failed"
    failure = last_failure or LastFailure(reason=reason, message=message, time=when)
    return Outcome(Verdict(ConditionType.FAILED, T, reason, message), when, failure)


def pending_too_long(
    job: JobFacts, pods: Sequence[PodFacts], running_now: Verdict, deadline_seconds: int, now: dt.datetime
) -> Outcome | None:
    """The runner is not running pendingDeadlineSeconds after admission (or the last attempt)."""
    since = pending_since(job, pods)
    if since is None or (now - since).total_seconds() <= deadline_seconds:
        return None
    message = f"the runner did not start within pendingDeadlineSeconds ({deadline_seconds} s): {running_now.message}"
    verdict = Verdict(ConditionType.FAILED, T, Reason.PENDING_DEADLINE_EXCEEDED, message)
    failure = LastFailure(reason=Reason.PENDING_DEADLINE_EXCEEDED, message=message, time=format_time(now))
    return Outcome(verdict, format_time(now), failure, give_up=True)


def given_up(running_now: Verdict) -> Verdict:
    return Verdict(ConditionType.RUNNING, F, Reason.FINISHED, "given up: " + running_now.message)


# --- a request of ours that the API server refused -------------------------------------------


@dataclass(frozen=True)
class ApiFailure:
    """A call this reconcile made that failed (recorded by the reconciler, fed back in here)."""

    call: ApiCall
    http_status: int
    http_reason: str


# The condition each action is reported on (what it failed to bring about), and its words.
FAILED_ACTIONS: dict[ApiCall, tuple[ConditionType, str]] = {
    ApiCall.CREATE_JOB: (ConditionType.ADMITTED, "creating the Job"),
    ApiCall.PATCH_JOB: (ConditionType.ADMITTED, "setting the Job's spec.suspend"),
    ApiCall.DELETE_JOB: (ConditionType.RUNNING, "deleting the Job"),
}


def with_api_failures(
    verdicts: Mapping[ConditionType, Verdict], failures: Sequence[ApiFailure]
) -> dict[ConditionType, Verdict]:
    """The conditions the failed calls should have moved say why they did not (reason
    ApiCallFailed, the call and HTTP status in the message); their status stays what the
    objects say, so the phase and the rest of the status still advance."""
    out = dict(verdicts)
    for failure in failures:
        kind, doing = FAILED_ACTIONS[failure.call]
        before = out[kind]
        message = (
            f"{doing} failed ({failure.call}: HTTP {failure.http_status} {failure.http_reason}".rstrip()
            + f"); retried at the next resync. Before: {before.message}"
        )
        out[kind] = Verdict(kind, before.status, Reason.API_CALL_FAILED, message)
    return out


# --- assembling -------------------------------------------------------------------------------

PLACEHOLDERS = {
    ConditionType.ACCEPTED: Verdict(ConditionType.ACCEPTED, U, Reason.PENDING, "not judged yet"),
    ConditionType.ADMITTED: Verdict(ConditionType.ADMITTED, U, Reason.PENDING, "no Job yet"),
    ConditionType.RUNNING: Verdict(ConditionType.RUNNING, F, Reason.NOT_STARTED, "the runner has not started"),
    ConditionType.COMPLETE: Verdict(ConditionType.COMPLETE, F, Reason.IN_PROGRESS, "not finished"),
    ConditionType.FAILED: Verdict(ConditionType.FAILED, F, Reason.NO_FAILURE, "nothing has failed"),
}


def derive_phase(verdicts: Mapping[ConditionType, Verdict]) -> Phase:
    def true(kind: ConditionType) -> bool:
        verdict = verdicts.get(kind)
        return verdict is not None and verdict.status == T

    admission = verdicts.get(ConditionType.ADMITTED)
    run = verdicts.get(ConditionType.RUNNING)
    if true(ConditionType.FAILED):
        return Phase.FAILED
    if true(ConditionType.COMPLETE):
        return Phase.SUCCEEDED
    # Between the runner's exit and the Job's verdict (either way round) the render still runs.
    if true(ConditionType.RUNNING) or (run is not None and run.reason in (Reason.COLLECTING_RESULT, Reason.FINISHED)):
        return Phase.RUNNING
    if admission is not None and admission.reason == Reason.SUSPENDED:
        return Phase.SUSPENDED
    if admission is not None and admission.reason == Reason.QUEUED_IN_KUEUE:
        return Phase.QUEUED
    return Phase.PENDING


def summary(phase: Phase, verdicts: Mapping[ConditionType, Verdict]) -> str:
    """status.message: the decisive condition's message, else what holds the render."""
    decisive = {
        Phase.FAILED: ConditionType.FAILED,
        Phase.SUCCEEDED: ConditionType.COMPLETE,
        Phase.RUNNING: ConditionType.RUNNING,
    }.get(phase)
    if decisive is not None:
        return verdicts[decisive].message
    for kind in (ConditionType.ADMITTED, ConditionType.RUNNING):
        verdict = verdicts[kind]
        if verdict.status != T and verdict.reason not in (Reason.PENDING, Reason.NOT_STARTED, Reason.NOT_ADMITTED):
            return verdict.message
    return verdicts[ConditionType.ADMITTED].message


def kstatus_verdicts(phase: Phase, verdicts: Mapping[ConditionType, Verdict]) -> list[Verdict]:
    """Ready, Reconciling, Stalled (kstatus: InProgress while on its way, Current once Succeeded,
    Failed once Failed). Suspended is neither progressing nor stalled: Ready=False keeps it
    InProgress for kstatus, which is right for a render that has not happened."""
    message = summary(phase, verdicts)
    if phase == Phase.SUCCEEDED:
        return [
            Verdict(ConditionType.READY, T, Reason.RENDERED, message),
            Verdict(ConditionType.RECONCILING, F, Reason.RENDERED, "the render is done"),
            Verdict(ConditionType.STALLED, F, Reason.RENDERED, "the render is done"),
        ]
    if phase == Phase.FAILED:
        reason = verdicts[ConditionType.FAILED].reason
        return [
            Verdict(ConditionType.READY, F, reason, message),
            Verdict(ConditionType.RECONCILING, F, reason, "the render failed; nothing more will happen"),
            Verdict(ConditionType.STALLED, T, reason, message),
        ]
    if phase == Phase.SUSPENDED:
        return [
            Verdict(ConditionType.READY, F, Reason.SUSPENDED, message),
            Verdict(ConditionType.RECONCILING, F, Reason.SUSPENDED, message),
            Verdict(ConditionType.STALLED, F, Reason.SUSPENDED, message),
        ]
    return [
        Verdict(ConditionType.READY, F, phase.value, message),
        Verdict(ConditionType.RECONCILING, T, phase.value, message),
        Verdict(ConditionType.STALLED, F, phase.value, "nothing has failed"),
    ]


def with_placeholders(verdicts: Mapping[ConditionType, Verdict]) -> dict[ConditionType, Verdict]:
    """Every one of the operator's own conditions, in order; absent ones are placeholders."""
    return {kind: verdicts.get(kind) or PLACEHOLDERS[kind] for kind in OWN_CONDITIONS}


def set_conditions(
    own: Mapping[ConditionType, Verdict],
    phase: Phase,
    old: TalkingVideoStatus,
    generation: int | None,
    now: dt.datetime,
) -> tuple[list[Condition], list[Event]]:
    """The verdicts (with_placeholders) and the kstatus ones -> conditions in CONDITION_TYPES
    order. A condition keeps its lastTransitionTime while its status is unchanged; a change
    of the operator's own conditions to True, or to a notable reason, is an event."""
    conditions: list[Condition] = []
    events: list[Event] = []
    for verdict in [*own.values(), *kstatus_verdicts(phase, own)]:
        before = old.condition(verdict.type)
        same = before is not None and before.status == verdict.status
        conditions.append(
            Condition(
                type=verdict.type,
                status=verdict.status,
                reason=verdict.reason,
                message=verdict.message,
                last_transition_time=before.last_transition_time if same and before else format_time(now),
                observed_generation=generation,
            )
        )
        changed = not same or (before is not None and before.reason != verdict.reason)
        if verdict.type not in OWN_CONDITIONS or not changed or verdict.reason == Reason.SPEC_CHANGE_IGNORED:
            continue  # SpecChangeIgnored is reported once per generation by compute_status
        if verdict.status == T or verdict.reason in NOTABLE:
            warning = (verdict.type == ConditionType.FAILED and verdict.status == T) or verdict.reason in WARNING
            events.append(
                Event(
                    "Warning" if warning else "Normal",
                    verdict.reason,
                    f"{verdict.type}: {verdict.message}",
                    verdict.type,
                    verdict.status,
                )
            )
    return conditions, events
