"""TalkingVideo + its Job + the Job's pods (+ now) -> status, events and actions (pure).

Level-triggered: the status is recomputed from what exists, never from a remembered
sequence of events, so a restarted operator or a missed watch event converges to the
same answer. Two facts are remembered from the previous status because nothing else
records them: that a Job was created (so a vanished Job reads JobDeleted, not "create
one"), and a terminal result (Complete/Failed never revert, and survive the Job's TTL).

The Job is the source of truth for success and failure; the pod explains why (waiting
reasons, OOM kills, the runner's result JSON in its termination message).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from multitalk.operator import api
from multitalk.operator.job_builder import ANNOTATION_REQUEST_HASH, CONTAINER, KUEUE_QUEUE_LABEL, request_hash
from multitalk.runner.errors import ExitCode
from multitalk.runner.result import RunResult

Obj = Mapping[str, Any]

# Runner exit codes -> Failed reasons (runner/errors.py is the contract).
EXIT_REASONS = {
    int(ExitCode.INVALID_INPUT): "InvalidInput",
    int(ExitCode.ENGINE_UNAVAILABLE): "EngineUnavailable",
    int(ExitCode.STORAGE_REFUSED): "StorageRefused",
    int(ExitCode.USAGE): "Usage",
    int(ExitCode.RETRYABLE): "RunnerError",
}
IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
CONFIG_ERROR_REASONS = ("CreateContainerConfigError", "CreateContainerError")
# Non-True conditions worth an event (a person can act on them).
NOTABLE_REASONS = (
    "QueuedInKueue",
    "Suspended",
    "Unschedulable",
    "ImagePullBackOff",
    "ContainerConfigError",
    "NodeLost",
    "PodMissing",
)
WARNING_REASONS = (
    "InvalidSpec",
    "Unschedulable",
    "ImagePullBackOff",
    "ContainerConfigError",
    "NodeLost",
    "PodMissing",
    "SpecChangeIgnored",
)
LOG_TAIL_CHARS = 2000


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
    condition: str = ""  # the condition whose change this reports
    status: str = ""


@dataclass
class Reconciliation:
    """What the handler should write and do."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    create_job: bool = False  # no Job yet and one should exist
    delete_job: bool = False  # pendingDeadlineSeconds passed: free the queue slot / GPU
    job_suspend: bool | None = None  # patch the Job's spec.suspend to this (no Kueue queue only)


# --- time helpers ---------------------------------------------------------------------------


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float) -> str:
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


# --- reading Jobs and pods ------------------------------------------------------------------


def _conditions(obj: Obj | None) -> dict[str, Obj]:
    if not obj:
        return {}
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def _is_true(conds: Mapping[str, Obj], kind: str) -> bool:
    return conds.get(kind, {}).get("status") == "True"


def _runner_status(pod: Obj) -> Obj:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _terminated(pod: Obj) -> Obj | None:
    state = _runner_status(pod)
    terminated = (state.get("state") or {}).get("terminated") or (state.get("lastState") or {}).get("terminated")
    return terminated if terminated else None


def _created(obj: Obj) -> dt.datetime:
    return parse_time(obj.get("metadata", {}).get("creationTimestamp")) or dt.datetime.min.replace(tzinfo=dt.UTC)


def current_pod(pods: Sequence[Obj]) -> Obj | None:
    """The attempt that matters now: a live one if any, else the newest."""
    live = [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") in ("Pending", "Running", "Unknown")
        and not p.get("metadata", {}).get("deletionTimestamp")
    ]
    candidates = live or list(pods)
    return max(candidates, key=_created) if candidates else None


def parse_result(message: str | None) -> RunResult | None:
    """The runner's result JSON, or None when the message is a log tail (or empty)."""
    if not message or not message.lstrip().startswith("{"):
        return None
    try:
        return RunResult.model_validate_json(message)
    except ValidationError:
        return None


def _latest_result(pods: Sequence[Obj]) -> tuple[RunResult | None, Obj | None]:
    """Newest result JSON any attempt left, with the pod it came from."""
    for pod in sorted(pods, key=_created, reverse=True):
        terminated = _terminated(pod)
        result = parse_result(terminated.get("message") if terminated else None)
        if result is not None:
            return result, pod
    return None, None


def _failed_pods(pods: Sequence[Obj]) -> list[Obj]:
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed" or _exit_code(p) not in (None, 0)]
    return sorted(failed, key=_created, reverse=True)


def _exit_code(pod: Obj) -> int | None:
    terminated = _terminated(pod)
    code = terminated.get("exitCode") if terminated else None
    return int(code) if isinstance(code, int) else None


# --- failure descriptions -------------------------------------------------------------------


def describe_pod_failure(pod: Obj) -> dict[str, Any] | None:
    """lastFailure of one failed attempt: from the result JSON, the kill reason or the log tail."""
    terminated = _terminated(pod)
    status = pod.get("status") or {}
    if terminated is None:
        if status.get("phase") != "Failed":
            return None
        reason = status.get("reason") or "PodFailed"
        return {"reason": reason, "message": status.get("message") or f"the pod failed ({reason})"}
    code = _exit_code(pod)
    message_text = terminated.get("message") or ""
    result = parse_result(message_text)
    out: dict[str, Any] = {"exitCode": code, "time": terminated.get("finishedAt")}
    if terminated.get("reason") == "OOMKilled":
        limit = (_runner_limits(pod) or {}).get("memory", "its limit")
        out["reason"] = "OOMKilled"
        out["message"] = (
            f"the runner ran out of memory ({limit}); raise spec.runner.resources.limits.memory "
            "or lower spec.video width/height"
        )
    elif result is not None and result.error is not None:
        out["reason"] = EXIT_REASONS.get(code or -1, result.error.reason) if code in (3, 4, 5) else result.error.reason
        out["message"] = result.error.message
        if result.error.field:
            out["field"] = result.error.field
    else:
        out["reason"] = EXIT_REASONS.get(code or -1, "RunnerError")
        out["message"] = f"the runner exited with code {code} without a result"
        if message_text:
            out["logTail"] = message_text[-LOG_TAIL_CHARS:]
    if status.get("reason") in ("DeadlineExceeded", "Evicted"):
        out["message"] += f" ({status['reason']})"
    return {k: v for k, v in out.items() if v is not None}


def _runner_limits(pod: Obj) -> Mapping[str, Any] | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == CONTAINER:
            return (container.get("resources") or {}).get("limits")
    return None


# --- the status function --------------------------------------------------------------------


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def compute_status(
    tv: Obj,
    job: Obj | None,
    pods: Sequence[Obj],
    now: dt.datetime,
    progress: tuple[str, float] | None = None,
) -> Reconciliation:
    """The whole status of a TalkingVideo from its objects; see the module docstring."""
    meta = tv.get("metadata") or {}
    old: Mapping[str, Any] = tv.get("status") or {}
    generation = meta.get("generation")
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    terminal = any(old_conds.get(k, {}).get("status") == "True" for k in ("Complete", "Failed"))
    job_was_created = bool((old.get("job") or {}).get("name"))

    # A finished render whose Job is gone (TTL, or deleted after the end) stays as it was.
    if terminal and job is None:
        status = dict(old)
        status["observedGeneration"] = generation
        return Reconciliation(status=status)

    conds: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {"observedGeneration": generation}
    events: list[Event] = []
    action = Reconciliation(status=out)

    spec: api.TalkingVideoSpec | None = None
    try:
        spec = api.parse_spec(tv.get("spec"))
    except api.InvalidSpecError as exc:
        if job is None:
            message = f"the spec cannot be rendered: {exc}"
            conds["Accepted"] = _condition("Accepted", "False", "InvalidSpec", message)
            conds["Failed"] = _condition("Failed", "True", "InvalidSpec", message)
            out["lastFailure"] = {"reason": "InvalidSpec", "message": message, "time": format_time(now)}
            out["completionTime"] = old.get("completionTime") or format_time(now)
            return _finish(action, old, old_conds, conds, events, now)
        # A Job exists: it renders the spec it was built from; the change is ignored below.

    if job is None:
        assert spec is not None
        conds["Accepted"] = _condition("Accepted", "True", "Valid", "the spec is valid")
        if job_was_created and not terminal:
            message = (
                f"the Job {old['job']['name']} was deleted before the render finished; "
                "create a new TalkingVideo to render again"
            )
            conds["Failed"] = _condition("Failed", "True", "JobDeleted", message)
            out["job"] = old.get("job")
            out["lastFailure"] = {"reason": "JobDeleted", "message": message, "time": format_time(now)}
            out["completionTime"] = format_time(now)
            _keep(out, old, "startTime", "pod", "attempts", "engine", "timings", "audio", "progress", "progressText")
        elif spec.suspend:
            conds["Admitted"] = _condition("Admitted", "False", "Suspended", "spec.suspend is true: no Job is created")
        else:
            conds["Admitted"] = _condition("Admitted", "Unknown", "JobPending", "creating the Job")
            action.create_job = True
        return _finish(action, old, old_conds, conds, events, now)

    job_meta = job.get("metadata") or {}
    job_spec = job.get("spec") or {}
    job_status = job.get("status") or {}
    job_conds = _conditions(job)
    queue = (job_meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL)
    out["job"] = {"name": job_meta.get("name")}
    out["attempts"] = {"failed": int(job_status.get("failed") or 0), "active": int(job_status.get("active") or 0)}

    # Accepted (and a spec changed after the Job was made: ignored, said so once per generation).
    accepted = _condition("Accepted", "True", "Valid", "the spec is valid; the Job renders it")
    built_from = (job_meta.get("annotations") or {}).get(ANNOTATION_REQUEST_HASH)
    changed = spec is None or (built_from is not None and built_from != request_hash(spec))
    if changed:
        accepted = _condition(
            "Accepted",
            "True",
            "SpecChangeIgnored",
            "the spec changed after the Job was created; the Job renders the original spec. "
            "A new render is a new TalkingVideo",
        )
        if old.get("observedGeneration") != generation:
            events.append(Event("Warning", "SpecChangeIgnored", accepted["message"]))
    conds["Accepted"] = accepted

    job_ok = _is_true(job_conds, "Complete") or _is_true(job_conds, "SuccessCriteriaMet")
    finished_bad = _is_true(job_conds, "Failed") or _is_true(job_conds, "FailureTarget")
    suspended = bool(job_spec.get("suspend")) and not job_ok and not finished_bad

    # Without a queue, spec.suspend drives the Job's suspend; with Kueue, Kueue owns it.
    if (
        spec is not None
        and not queue
        and not (job_ok or finished_bad)
        and spec.suspend != bool(job_spec.get("suspend"))
    ):
        action.job_suspend = spec.suspend

    # Admitted
    if suspended:
        if queue:
            conds["Admitted"] = _condition(
                "Admitted", "False", "QueuedInKueue", f"waiting for Kueue to admit the Job in queue {queue}"
            )
        else:
            conds["Admitted"] = _condition("Admitted", "False", "Suspended", "the Job is suspended (spec.suspend)")
    else:
        conds["Admitted"] = _condition(
            "Admitted", "True", "Admitted", f"admitted by Kueue (queue {queue})" if queue else "the Job may start"
        )

    # The pod
    pod = current_pod(pods)
    if pod is not None:
        pod_status = pod.get("status") or {}
        out["pod"] = {
            k: v
            for k, v in {"name": pod["metadata"]["name"], "nodeName": (pod.get("spec") or {}).get("nodeName")}.items()
            if v
        }
    else:
        pod_status = {}

    # Results (engine, timings, audio, output) from the newest result JSON.
    result, result_pod = _latest_result(pods)
    if result is not None:
        if result.engine is not None:
            out["engine"] = result.engine.wire()
        out["timings"] = result.timings.wire()
        if result.audio is not None:
            out["audio"] = result.audio.wire()
        if result.output is not None:
            out["output"] = result.output.wire()
    else:
        _keep(out, old, "engine", "audio", "output")
        if old.get("timings"):
            out["timings"] = dict(old["timings"])
    queue_seconds = _queue_seconds(tv, pods)
    if queue_seconds is not None:
        out.setdefault("timings", {})["queueSeconds"] = round(queue_seconds, 3)

    # Succeeded and its output are written together: while the Job reads succeeded but no
    # attempt's runner shows its exit yet (the pod status lags, or a stale read), wait for it.
    collecting = job_ok and result is None and bool(pods) and not any(_exit_code(p) == 0 for p in pods)
    finished_ok = job_ok and not collecting

    # Running
    runner = _runner_status(pod) if pod is not None else {}
    waiting = (runner.get("state") or {}).get("waiting") or {}
    pod_conds = _conditions(pod)
    if collecting:
        conds["Running"] = _condition(
            "Running",
            "False",
            "CollectingResult",
            "the Job succeeded; waiting for the runner's exit and result JSON on its pod",
        )
    elif finished_ok or finished_bad:
        conds["Running"] = _condition("Running", "False", "Finished", "the runner has finished")
    elif suspended:
        conds["Running"] = _condition("Running", "False", "NotAdmitted", "the Job is not admitted yet")
    elif pod is not None and (
        pod_status.get("reason") == "NodeLost"
        or pod_status.get("phase") == "Unknown"
        or pod_conds.get("DisruptionTarget", {}).get("status") == "True"
    ):
        why = pod_conds.get("DisruptionTarget", {}).get("message") or pod_status.get("message") or "the node is lost"
        conds["Running"] = _condition(
            "Running",
            "Unknown",
            "NodeLost",
            f"pod {pod['metadata']['name']} was disrupted: {why}; it does not count as a retry",
        )
    elif pod is None and not old.get("pod") and not job_status.get("failed"):
        conds["Running"] = _condition("Running", "False", "PodPending", "waiting for the Job to create the runner pod")
    elif pod is None or pod.get("metadata", {}).get("deletionTimestamp"):
        conds["Running"] = _condition(
            "Running", "False", "PodMissing", "the runner pod is gone (deleted?); the Job creates a replacement"
        )
    elif pod_status.get("phase") in ("Failed", "Succeeded"):
        conds["Running"] = _condition(
            "Running", "False", "Retrying", "the last attempt failed; the Job starts another (see lastFailure)"
        )
    elif pod_status.get("phase") == "Running" and (runner.get("state") or {}).get("running"):
        node = (pod.get("spec") or {}).get("nodeName")
        conds["Running"] = _condition(
            "Running", "True", "PodRunning", f"rendering on node {node}" if node else "rendering"
        )
    elif waiting.get("reason") in IMAGE_PULL_REASONS:
        conds["Running"] = _condition(
            "Running",
            "False",
            "ImagePullBackOff",
            f"cannot pull the runner image: {waiting.get('message') or waiting['reason']}",
        )
    elif waiting.get("reason") in CONFIG_ERROR_REASONS:
        conds["Running"] = _condition(
            "Running",
            "False",
            "ContainerConfigError",
            f"the runner container cannot be created: {waiting.get('message') or waiting['reason']} "
            "(is the S3 Secret there, with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY?)",
        )
    elif pod_conds.get("PodScheduled", {}).get("reason") == "Unschedulable":
        conds["Running"] = _condition(
            "Running",
            "False",
            "Unschedulable",
            f"no node fits the runner: {pod_conds['PodScheduled'].get('message', '')}".rstrip(": "),
        )
    else:
        conds["Running"] = _condition("Running", "False", "PodPending", "the runner pod is starting")

    # Complete / Failed
    failed_pods = _failed_pods(pods)
    last_failure = describe_pod_failure(failed_pods[0]) if failed_pods else None
    if finished_ok:
        if result is not None and result.output is not None:
            message = (
                f"wrote {result.output.uri} ({result.output.duration_seconds:.1f} s, {result.output.frames} frames)"
            )
        elif old.get("output") and old_conds.get("Complete", {}).get("status") == "True":
            message = str(old_conds["Complete"].get("message") or "the Job succeeded")  # pod gone since
        elif result_pod is None and not pods:
            message = "the Job succeeded; its pod is gone, so engine, timings and output are unknown"
        else:
            message = "the Job succeeded"
        conds["Complete"] = _condition("Complete", "True", "Rendered", message)
        out["completionTime"] = (
            job_status.get("completionTime") or _cond_time(job_conds, "Complete") or format_time(now)
        )
    elif finished_bad:
        reason, message = _job_failure(job_conds, last_failure)
        conds["Failed"] = _condition("Failed", "True", reason, message)
        out["completionTime"] = (
            _cond_time(job_conds, "FailureTarget") or _cond_time(job_conds, "Failed") or format_time(now)
        )
        if last_failure is None:
            last_failure = {"reason": reason, "message": message, "time": out["completionTime"]}
    elif not collecting and spec is not None and not suspended and conds["Running"]["status"] == "False":
        pending_since = _pending_since(job, pods)
        if pending_since is not None and (now - pending_since).total_seconds() > spec.pending_deadline_seconds:
            why = conds["Running"]["message"]
            message = (
                f"the runner did not start within pendingDeadlineSeconds ({spec.pending_deadline_seconds} s): {why}"
            )
            conds["Failed"] = _condition("Failed", "True", "PendingDeadlineExceeded", message)
            conds["Running"] = _condition("Running", "False", "Finished", "given up: " + why)
            out["completionTime"] = format_time(now)
            last_failure = {"reason": "PendingDeadlineExceeded", "message": message, "time": format_time(now)}
            action.delete_job = True
    if last_failure is not None:
        out["lastFailure"] = last_failure

    # Times
    start = parse_time(job_status.get("startTime"))
    if start is not None:
        out["startTime"] = format_time(start)
        end = parse_time(out.get("completionTime"))
        if end is not None or progress is not None:
            seconds = round(max(0.0, ((end or now) - start).total_seconds()), 3)
            out["durationSeconds"], out["duration"] = seconds, human_duration(seconds)
        else:
            # A running duration moves with the clock: it is refreshed with each progress read
            # only, else every recompute (each one echoed by the watch) would write the status.
            _keep(out, old, "durationSeconds", "duration")

    # Progress
    if "Complete" in conds:
        out["progress"] = {"stage": "done", "percent": 100.0}
    elif progress is not None and conds["Running"]["status"] == "True":
        out["progress"] = {"stage": progress[0], "percent": round(min(100.0, max(0.0, progress[1])), 1)}
    elif old.get("progress") and (conds["Running"]["status"] == "True" or collecting or "Failed" in conds):
        out["progress"] = dict(old["progress"])  # read on a slow timer: keep the last reading
    if out.get("progress"):
        out["progressText"] = f"{out['progress']['stage']} {out['progress']['percent']:.0f}%"

    return _finish(action, old, old_conds, conds, events, now)


def _keep(out: dict[str, Any], old: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if old.get(key) is not None:
            out[key] = old[key]


def _cond_time(conds: Mapping[str, Obj], kind: str) -> str | None:
    value = conds.get(kind, {}).get("lastTransitionTime") if _is_true(conds, kind) else None
    return value if isinstance(value, str) else None


def _queue_seconds(tv: Obj, pods: Sequence[Obj]) -> float | None:
    """TalkingVideo created -> first runner container started."""
    created = parse_time((tv.get("metadata") or {}).get("creationTimestamp"))
    if created is None:
        return None
    starts = []
    for pod in pods:
        state = _runner_status(pod).get("state") or {}
        for kind in ("running", "terminated"):
            started = parse_time((state.get(kind) or {}).get("startedAt"))
            if started is not None:
                starts.append(started)
    if not starts:
        return None
    return max(0.0, (min(starts) - created).total_seconds())


def _pending_since(job: Obj, pods: Sequence[Obj]) -> dt.datetime | None:
    """Since when the runner should be running: admission, or when an attempt last ran."""
    candidates: list[dt.datetime | None] = [parse_time((job.get("status") or {}).get("startTime")) or _created(job)]
    for pod in pods:
        state = _runner_status(pod).get("state") or {}
        candidates.append(parse_time((state.get("running") or {}).get("startedAt")))
        candidates.append(parse_time((state.get("terminated") or {}).get("finishedAt")))
    valid = [c for c in candidates if c is not None and c.year > 1]
    return max(valid) if valid else None


def _job_failure(job_conds: Mapping[str, Obj], last_failure: Mapping[str, Any] | None) -> tuple[str, str]:
    """Reason and message of a failed Job: the runner's own reason wins over the Job's."""
    cond = job_conds.get("Failed") if _is_true(job_conds, "Failed") else job_conds.get("FailureTarget", {})
    job_reason = (cond or {}).get("reason") or "JobFailed"
    job_message = (cond or {}).get("message") or ""
    if job_reason == "DeadlineExceeded":
        return "DeadlineExceeded", f"the render ran past activeDeadlineSeconds: {job_message}".rstrip(": ")
    if last_failure is not None:
        reason = str(last_failure["reason"])
        message = str(last_failure["message"])
        if last_failure.get("field"):
            message = f"{last_failure['field']}: {message}"
        if reason in ("InvalidInput", "EngineUnavailable", "StorageRefused", "OOMKilled"):
            return reason, message
        if job_reason == "BackoffLimitExceeded":
            return "BackoffLimitExceeded", f"the runner failed too often (backoffLimit); last attempt: {message}"
        return reason, message
    if job_reason == "BackoffLimitExceeded":
        return "BackoffLimitExceeded", f"the runner failed too often (backoffLimit) {job_message}".strip()
    return job_reason, job_message or "the Job failed"


def derive_phase(conds: Mapping[str, Mapping[str, Any]]) -> str:
    def true(kind: str) -> bool:
        return conds.get(kind, {}).get("status") == "True"

    admitted = conds.get("Admitted", {})
    if true("Failed"):
        return "Failed"
    if true("Complete"):
        return "Succeeded"
    if true("Running") or conds.get("Running", {}).get("reason") == "CollectingResult":
        return "Running"
    if admitted.get("reason") == "Suspended":
        return "Suspended"
    if admitted.get("reason") == "QueuedInKueue":
        return "Queued"
    return "Pending"


def _finish(
    action: Reconciliation,
    old: Mapping[str, Any],
    old_conds: Mapping[Any, Mapping[str, Any]],
    conds: dict[str, dict[str, Any]],
    events: list[Event],
    now: dt.datetime,
) -> Reconciliation:
    out = action.status
    generation = out.get("observedGeneration")
    # Every type is always present: absent ones are False (Complete/Failed) or Unknown.
    conds.setdefault("Accepted", _condition("Accepted", "Unknown", "Pending", "not judged yet"))
    conds.setdefault("Admitted", _condition("Admitted", "Unknown", "Pending", "no Job yet"))
    conds.setdefault("Running", _condition("Running", "False", "NotStarted", "the runner has not started"))
    conds.setdefault("Complete", _condition("Complete", "False", "InProgress", "not finished"))
    conds.setdefault("Failed", _condition("Failed", "False", "NoFailure", "nothing has failed"))
    ordered = []
    for kind in api.CONDITION_TYPES:
        cond = conds[kind]
        before = old_conds.get(kind) or {}
        same = before.get("status") == cond["status"]
        cond["lastTransitionTime"] = (
            before.get("lastTransitionTime") if same and before.get("lastTransitionTime") else format_time(now)
        )
        if generation is not None:
            cond["observedGeneration"] = generation
        ordered.append(cond)
        changed = not same or before.get("reason") != cond["reason"]
        if changed and (cond["status"] == "True" or cond["reason"] in NOTABLE_REASONS):
            if cond["reason"] == "SpecChangeIgnored":
                continue  # reported once per generation above
            warning = (kind == "Failed" and cond["status"] == "True") or cond["reason"] in WARNING_REASONS
            events.append(
                Event(
                    "Warning" if warning else "Normal",
                    cond["reason"],
                    f"{kind}: {cond['message']}",
                    kind,
                    cond["status"],
                )
            )
    out["conditions"] = ordered
    out["phase"] = derive_phase(conds)
    decisive = {"Failed": "Failed", "Succeeded": "Complete", "Running": "Running"}.get(out["phase"])
    out["message"] = conds[decisive]["message"] if decisive else _pending_message(conds)
    action.events = events
    action.status = {k: v for k, v in out.items() if v is not None}
    return action


def _pending_message(conds: Mapping[str, Mapping[str, Any]]) -> str:
    for kind in ("Admitted", "Running"):
        cond = conds[kind]
        if cond["status"] != "True" and cond["reason"] not in ("Pending", "NotStarted", "NotAdmitted"):
            return str(cond["message"])
    return str(conds["Admitted"]["message"])
