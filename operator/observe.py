"""What a Job and its pods say, read once into typed facts (pure).

The Job and pod bodies are Kubernetes' own shapes (dicts, as the API returns them); this
module is the one place that digs into them. Everything downstream (conditions.py,
status.py) reads the facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from multitalk.operator.job_builder import ANNOTATION_REQUEST_HASH, CONTAINER, KUEUE_QUEUE_LABEL
from multitalk.operator.reasons import Reason, runner_failure_reason
from multitalk.operator.status_types import LastFailure
from multitalk.operator.times import EPOCH, parse_time
from multitalk.runner.errors import PERMANENT_EXIT_CODES
from multitalk.runner.result import RunResult

Obj = Mapping[str, Any]
IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
CONFIG_ERROR_REASONS = ("CreateContainerConfigError", "CreateContainerError")
LOG_TAIL_CHARS = 2000
DEFAULT_BACKOFF_LIMIT = 6  # Kubernetes' default for a Job without spec.backoffLimit


def _conditions(obj: Obj) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def _true_since(conds: Mapping[str, Obj], kind: str) -> str | None:
    """lastTransitionTime of a True condition, None when it is not True."""
    cond = conds.get(kind) or {}
    value = cond.get("lastTransitionTime") if cond.get("status") == "True" else None
    return value if isinstance(value, str) else None


def _is_true(conds: Mapping[str, Obj], kind: str) -> bool:
    return (conds.get(kind) or {}).get("status") == "True"


@dataclass(frozen=True)
class JobFacts:
    name: str
    queue: str | None  # Kueue LocalQueue label
    request_hash: str | None  # the request it was built from (annotation)
    spec_suspend: bool
    succeeded: bool  # Complete or SuccessCriteriaMet
    failed: bool  # Failed or FailureTarget
    failure_reason: str  # of the Failed (else FailureTarget) condition
    failure_message: str
    failure_time: str | None  # FailureTarget's time, else Failed's
    completion_time: str | None  # status.completionTime, else Complete's time
    start_time: dt.datetime | None
    created: dt.datetime
    failed_pods: int
    active_pods: int
    backoff_limit: int  # spec.backoffLimit: failed pods allowed before the Job fails

    @property
    def finished(self) -> bool:
        return self.succeeded or self.failed

    @property
    def suspended(self) -> bool:
        """Held (by Kueue or spec.suspend) and not finished."""
        return self.spec_suspend and not self.finished


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) else default


def job_facts(job: Obj) -> JobFacts:
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    conds = _conditions(job)
    failed_cond = conds.get("Failed") if _is_true(conds, "Failed") else conds.get("FailureTarget")
    return JobFacts(
        name=str(meta.get("name", "")),
        queue=(meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL),
        request_hash=(meta.get("annotations") or {}).get(ANNOTATION_REQUEST_HASH),
        spec_suspend=bool((job.get("spec") or {}).get("suspend")),
        succeeded=_is_true(conds, "Complete") or _is_true(conds, "SuccessCriteriaMet"),
        failed=_is_true(conds, "Failed") or _is_true(conds, "FailureTarget"),
        failure_reason=str((failed_cond or {}).get("reason") or Reason.JOB_FAILED),
        failure_message=str((failed_cond or {}).get("message") or ""),
        failure_time=_true_since(conds, "FailureTarget") or _true_since(conds, "Failed"),
        completion_time=status.get("completionTime") or _true_since(conds, "Complete"),
        start_time=parse_time(status.get("startTime")),
        created=parse_time(meta.get("creationTimestamp")) or EPOCH,
        failed_pods=int(status.get("failed") or 0),
        active_pods=int(status.get("active") or 0),
        backoff_limit=_int_or((job.get("spec") or {}).get("backoffLimit"), DEFAULT_BACKOFF_LIMIT),
    )


@dataclass(frozen=True)
class Terminated:
    """The runner container's last exit."""

    exit_code: int | None
    reason: str  # Completed, Error, OOMKilled ...
    message: str  # the result JSON, or the log tail (FallbackToLogsOnError)
    started_at: dt.datetime | None
    finished_at: str | None

    def result(self) -> RunResult | None:
        """The runner's result JSON, or None when the message is a log tail (or empty)."""
        if not self.message.lstrip().startswith("{"):
            return None
        try:
            return RunResult.model_validate_json(self.message)
        except ValidationError:
            return None


@dataclass(frozen=True)
class PodFacts:
    name: str
    node_name: str | None
    created: dt.datetime
    deleting: bool
    phase: str | None  # Pending, Running, Succeeded, Failed, Unknown
    reason: str | None  # status.reason (Evicted, NodeLost, DeadlineExceeded ...)
    message: str | None
    disruption: str | None  # DisruptionTarget=True: its message (or "")
    unschedulable: str | None  # PodScheduled reason Unschedulable: its message (or "")
    # The runner container's current state (not lastState).
    running: bool
    running_since: dt.datetime | None
    started: dt.datetime | None  # startedAt of the running or terminated state
    finished: dt.datetime | None  # finishedAt of the terminated state
    waiting_reason: str | None
    waiting_message: str | None
    terminated: Terminated | None  # the last exit: state.terminated, else lastState.terminated
    memory_limit: str | None

    @property
    def live(self) -> bool:
        return self.phase in ("Pending", "Running", "Unknown") and not self.deleting

    @property
    def exit_code(self) -> int | None:
        return self.terminated.exit_code if self.terminated else None

    @property
    def node_lost(self) -> bool:
        return self.reason == "NodeLost" or self.phase == "Unknown" or self.disruption is not None


def _runner_status(pod: Obj) -> Obj:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _memory_limit(pod: Obj) -> str | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == CONTAINER:
            value = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            return None if value is None else str(value)
    return None


def pod_facts(pod: Obj) -> PodFacts:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    conds = _conditions(pod)
    runner = _runner_status(pod)
    state = runner.get("state") or {}
    waiting = state.get("waiting") or {}
    now_running, now_ended = state.get("running") or {}, state.get("terminated") or {}
    ended = now_ended or (runner.get("lastState") or {}).get("terminated") or None
    code = (ended or {}).get("exitCode")
    scheduled = conds.get("PodScheduled") or {}
    return PodFacts(
        name=str(meta.get("name", "")),
        node_name=(pod.get("spec") or {}).get("nodeName") or None,
        created=parse_time(meta.get("creationTimestamp")) or EPOCH,
        deleting=bool(meta.get("deletionTimestamp")),
        phase=status.get("phase"),
        reason=status.get("reason"),
        message=status.get("message"),
        disruption=str(conds["DisruptionTarget"].get("message") or "") if _is_true(conds, "DisruptionTarget") else None,
        unschedulable=str(scheduled.get("message") or "") if scheduled.get("reason") == "Unschedulable" else None,
        running=bool(now_running),
        running_since=parse_time(now_running.get("startedAt")),
        started=parse_time(now_running.get("startedAt")) or parse_time(now_ended.get("startedAt")),
        finished=parse_time(now_ended.get("finishedAt")),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        terminated=None
        if not ended
        else Terminated(
            exit_code=int(code) if isinstance(code, int) else None,
            reason=str(ended.get("reason") or ""),
            message=str(ended.get("message") or ""),
            started_at=parse_time(ended.get("startedAt")),
            finished_at=ended.get("finishedAt"),
        ),
        memory_limit=_memory_limit(pod),
    )


def current_pod(pods: Sequence[PodFacts]) -> PodFacts | None:
    """The attempt that matters now: a live one if any, else the newest."""
    candidates = [p for p in pods if p.live] or list(pods)
    return max(candidates, key=lambda p: p.created) if candidates else None


def newest_first(pods: Sequence[PodFacts]) -> list[PodFacts]:
    return sorted(pods, key=lambda p: p.created, reverse=True)


def latest_result(pods: Sequence[PodFacts]) -> RunResult | None:
    """Newest result JSON any attempt left."""
    for pod in newest_first(pods):
        result = pod.terminated.result() if pod.terminated else None
        if result is not None:
            return result
    return None


def last_failed(pods: Sequence[PodFacts]) -> PodFacts | None:
    failed = [p for p in pods if p.phase == "Failed" or p.exit_code not in (None, 0)]
    return newest_first(failed)[0] if failed else None


def describe_pod_failure(pod: PodFacts) -> LastFailure | None:
    """lastFailure of one failed attempt: from the result JSON, the kill reason or the log tail."""
    ended = pod.terminated
    if ended is None:
        if pod.phase != "Failed":
            return None
        why = pod.reason or Reason.POD_FAILED
        return LastFailure(reason=why, message=pod.message or f"the pod failed ({why})")
    code = ended.exit_code
    result = ended.result()
    field: str | None = None
    log_tail: str | None = None
    reason: str
    if ended.reason == "OOMKilled":
        reason = Reason.OOM_KILLED
        message = (
            f"the runner ran out of memory ({pod.memory_limit or 'its limit'}); raise "
            "spec.runner.resources.limits.memory or lower spec.video width/height"
        )
    elif result is not None and result.error is not None:
        # A permanent exit code names its reason; otherwise the runner's own word stands.
        reason = runner_failure_reason(code) if code in PERMANENT_EXIT_CODES else result.error.reason
        message, field = result.error.message, result.error.field
    else:
        reason = runner_failure_reason(code)
        message = f"the runner exited with code {code} without a result"
        log_tail = ended.message[-LOG_TAIL_CHARS:] or None
    if pod.reason in ("DeadlineExceeded", "Evicted"):
        message += f" ({pod.reason})"
    return LastFailure(
        reason=reason, message=message, exit_code=code, time=ended.finished_at, field=field, log_tail=log_tail
    )


def queue_seconds(tv: Obj, pods: Sequence[PodFacts]) -> float | None:
    """TalkingVideo created -> first runner container started."""
    created = parse_time((tv.get("metadata") or {}).get("creationTimestamp"))
    starts = [p.started for p in pods if p.started is not None]
    if created is None or not starts:
        return None
    return max(0.0, (min(starts) - created).total_seconds())


def pending_since(job: JobFacts, pods: Sequence[PodFacts]) -> dt.datetime | None:
    """Since when the runner should be running: admission, or when an attempt last ran."""
    candidates: list[dt.datetime | None] = [job.start_time or job.created]
    for pod in pods:
        candidates.extend((pod.running_since, pod.finished))
    valid = [c for c in candidates if c is not None and c.year > 1]
    return max(valid) if valid else None


def last_pod_activity(pods: Sequence[PodFacts]) -> dt.datetime | None:
    """When an attempt last changed: the newest creation or exit of any pod."""
    times = [t for p in pods for t in (p.created, p.finished) if t is not None and t.year > 1]
    return max(times) if times else None
