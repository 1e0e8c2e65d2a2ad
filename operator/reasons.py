"""The status vocabulary: condition types, their statuses and reasons, phases (each defined once).

Status, events, metrics and the CRD's descriptions all use these enums. A Failed reason
may also be a Kubernetes one passed through (the Job's, e.g. PodFailurePolicy, or a pod's,
e.g. Evicted) or the runner's own (runner/errors.FailureReason), so a condition's reason is
typed `str` and these are the values the operator itself writes.
"""

from __future__ import annotations

from enum import StrEnum

from multitalk.runner.errors import PERMANENT_EXIT_CODES, ExitCode, FailureReason, exit_reason


class ConditionType(StrEnum):
    # What the operator reports (`kubectl wait --for=condition=Complete` users rely on these).
    ACCEPTED = "Accepted"  # the spec can be rendered
    ADMITTED = "Admitted"  # the Job may start (Kueue admitted it, or no queue)
    RUNNING = "Running"  # the runner container runs
    COMPLETE = "Complete"  # the video was written
    FAILED = "Failed"  # the render ended without a video
    # kstatus' vocabulary (Flux, kpt, cli-utils), derived from the five above.
    READY = "Ready"  # True once Succeeded
    RECONCILING = "Reconciling"  # True while the render is on its way
    STALLED = "Stalled"  # True once Failed: nothing more will happen


# The order in .status.conditions.
OWN_CONDITIONS = (
    ConditionType.ACCEPTED,
    ConditionType.ADMITTED,
    ConditionType.RUNNING,
    ConditionType.COMPLETE,
    ConditionType.FAILED,
)
KSTATUS_CONDITIONS = (ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED)
CONDITION_TYPES = OWN_CONDITIONS + KSTATUS_CONDITIONS
TERMINAL_CONDITIONS = (ConditionType.COMPLETE, ConditionType.FAILED)


class ApiCall(StrEnum):
    """The operator's Kubernetes API calls (the multitalk_api_errors_total operation label)."""

    GET_TALKINGVIDEO = "get_talkingvideo"
    PATCH_STATUS = "patch_status"
    CREATE_JOB = "create_job"
    GET_JOB = "get_job"
    PATCH_JOB = "patch_job"
    DELETE_JOB = "delete_job"
    CREATE_CLEANUP_JOB = "create_cleanup_job"  # a deleted object's checkpoints (cleanup.py)
    LIST_PODS = "list_pods"
    POD_LOG = "pod_log"
    POST_EVENT = "post_event"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Phase(StrEnum):
    """Derived from the conditions, for people and printer columns."""

    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class Reason(StrEnum):
    """Reasons the operator writes, grouped by the condition that carries them."""

    # Accepted
    VALID = "Valid"
    INVALID_SPEC = "InvalidSpec"  # also Failed
    SPEC_CHANGE_IGNORED = "SpecChangeIgnored"
    # Admitted
    JOB_PENDING = "JobPending"
    QUEUED_IN_KUEUE = "QueuedInKueue"
    SUSPENDED = "Suspended"
    ADMITTED = "Admitted"
    # Running
    POD_PENDING = "PodPending"
    POD_RUNNING = "PodRunning"
    POD_MISSING = "PodMissing"
    RETRYING = "Retrying"
    NODE_LOST = "NodeLost"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    CONTAINER_CONFIG_ERROR = "ContainerConfigError"
    UNSCHEDULABLE = "Unschedulable"
    NOT_ADMITTED = "NotAdmitted"
    COLLECTING_RESULT = "CollectingResult"
    FINISHED = "Finished"
    JOB_STALLED = "JobStalled"  # failed below backoffLimit, nothing active, no new pod
    # Admitted or Running: a request of ours the API server refused (the status still advances)
    API_CALL_FAILED = "ApiCallFailed"
    # Complete
    RENDERED = "Rendered"
    # Failed (besides the runner's FailureReason values and Kubernetes' own)
    JOB_DELETED = "JobDeleted"
    JOB_FAILED = "JobFailed"
    POD_FAILED = "PodFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    PENDING_DEADLINE_EXCEEDED = "PendingDeadlineExceeded"
    OOM_KILLED = "OOMKilled"
    # A condition not decided yet (its placeholder while something else is missing).
    PENDING = "Pending"
    NOT_STARTED = "NotStarted"
    IN_PROGRESS = "InProgress"
    NO_FAILURE = "NoFailure"


# Non-True conditions worth an event: a person can act on them.
NOTABLE = frozenset(
    {
        Reason.QUEUED_IN_KUEUE,
        Reason.SUSPENDED,
        Reason.UNSCHEDULABLE,
        Reason.IMAGE_PULL_BACK_OFF,
        Reason.CONTAINER_CONFIG_ERROR,
        Reason.NODE_LOST,
        Reason.POD_MISSING,
        Reason.JOB_STALLED,
        Reason.API_CALL_FAILED,
    }
)
# Events of these reasons are Warnings (and every Failed=True).
WARNING = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.UNSCHEDULABLE,
        Reason.IMAGE_PULL_BACK_OFF,
        Reason.CONTAINER_CONFIG_ERROR,
        Reason.NODE_LOST,
        Reason.POD_MISSING,
        Reason.SPEC_CHANGE_IGNORED,
        Reason.JOB_STALLED,
        Reason.API_CALL_FAILED,
    }
)
# Failures that a retry cannot fix: they win over the Job's BackoffLimitExceeded.
PERMANENT_FAILURES = frozenset({*(exit_reason(code) for code in PERMANENT_EXIT_CODES), Reason.OOM_KILLED})
# What lastFailure.reason and Failed's reason may say (the CRD's description lists them).
FAILURE_REASONS = (
    Reason.INVALID_SPEC,
    *FailureReason,
    Reason.OOM_KILLED,
    Reason.DEADLINE_EXCEEDED,
    Reason.BACKOFF_LIMIT_EXCEEDED,
    Reason.PENDING_DEADLINE_EXCEEDED,
    Reason.JOB_DELETED,
    Reason.JOB_FAILED,
)


def runner_failure_reason(code: int | None) -> str:
    """The Failed reason of a runner that exited with `code` (runner/errors.py is the contract)."""
    try:
        return exit_reason(ExitCode(code if code is not None else -1))
    except ValueError:  # none, or not one of ours (a signal, 127 ...): the runner failed
        return FailureReason.RUNNER_ERROR
