"""The TalkingVideo status models (multitalk.dev/v1alpha1 .status).

status.compute_status returns a `TalkingVideoStatus`; it becomes a dict (`.wire()`) only for
the patch. The result sections (engine, timings, audio, output) are the runner's own
result models, so the status shows what the runner reported, field for field. The CRD's
status schema is generated from these models, and a test runs every recorded state
through it: a field the schema would prune cannot go unnoticed.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field, ValidationError

from multitalk.operator.reasons import CONDITION_TYPES, FAILURE_REASONS, ConditionStatus, ConditionType, Phase
from multitalk.runner.progress import Stage
from multitalk.runner.request import ApiModel
from multitalk.runner.result import AudioReport, EngineReport, OutputReport, ResumeReport, Timings

log = logging.getLogger("multitalk.operator")


class Condition(ApiModel):
    """A metav1.Condition."""

    type: ConditionType = Field(description=f"{', '.join(CONDITION_TYPES)}.")
    status: ConditionStatus
    reason: str = Field(
        max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", description="CamelCase cause."
    )
    message: str = Field(default="", max_length=32768, description="What happened, for a person.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, ge=0, description="Generation the condition was set for.")


class JobRef(ApiModel):
    name: str = Field(description="The child Job.")


class PodRef(ApiModel):
    name: str = Field(description="The runner pod (latest attempt).")
    node_name: str | None = Field(default=None, description="Node it runs or ran on.")


class Attempts(ApiModel):
    failed: int = Field(default=0, description="Runner pods that failed (counted towards backoffLimit).")
    active: int = Field(default=0, description="Runner pods running now.")


class StatusTimings(Timings):
    """Seconds spent in each stage; queueSeconds is creation -> runner container started."""

    queue_seconds: float | None = None


class Progress(ApiModel):
    stage: Stage = Field(description=f"{', '.join(Stage)}.")
    percent: float = Field(ge=0, le=100, description="Percent of the render done.")
    windows_done: int | None = Field(default=None, ge=0, description="Windows finished and checkpointed.")
    windows_total: int | None = Field(default=None, ge=0, description="Windows in the whole video.")
    resumed_from_frame: int | None = Field(
        default=None, ge=0, description="First frame the running attempt generated (> 0: it resumed)."
    )

    @property
    def text(self) -> str:
        windows = f" ({self.windows_done}/{self.windows_total} windows)" if self.windows_total else ""
        return f"{self.stage} {self.percent:.0f}%{windows}"


class LastFailure(ApiModel):
    reason: str = Field(description=f"Why the last attempt failed: {', '.join(FAILURE_REASONS)}, or the Job's reason.")
    message: str = Field(description="Details for a person.")
    exit_code: int | None = Field(default=None, description="Runner exit code, when a container ended.")
    time: str | None = Field(default=None, description="When it ended (RFC 3339).")
    field: str | None = Field(default=None, description="Spec field the failure concerns, when known.")
    log_tail: str | None = Field(
        default=None, description="Last lines of the runner's log when it crashed without a result."
    )


class TalkingVideoStatus(ApiModel):
    """Recomputed by the operator from the TalkingVideo, its Job and the Job's pod."""

    observed_generation: int | None = Field(default=None, description="metadata.generation this status reflects.")
    phase: Phase | None = Field(
        default=None, description="Derived from the conditions, for people and printer columns."
    )
    message: str | None = Field(default=None, description="One-line summary of the latest state.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description=f"{', '.join(CONDITION_TYPES)} (metav1.Condition).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    start_time: str | None = Field(default=None, description="When the Job started (RFC 3339).")
    completion_time: str | None = Field(default=None, description="When the render ended, either way (RFC 3339).")
    duration_seconds: float | None = Field(default=None, description="completionTime - startTime, or so far.")
    duration: str | None = Field(
        default=None, description="durationSeconds for people (1m23s), for the DURATION column."
    )
    job: JobRef | None = None
    pod: PodRef | None = None
    attempts: Attempts | None = None
    engine: EngineReport | None = None
    timings: StatusTimings | None = None
    audio: AudioReport | None = None
    progress: Progress | None = None
    progress_text: str | None = Field(
        default=None, description="Progress for the PROGRESS column, e.g. 'generate 42%'."
    )
    output: OutputReport | None = None
    resume: ResumeReport | None = None
    last_failure: LastFailure | None = None

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def is_true(self, kind: ConditionType) -> bool:
        cond = self.condition(kind)
        return cond is not None and cond.status == ConditionStatus.TRUE

    @property
    def terminal(self) -> bool:
        """Complete or Failed: never reverts (the one definition of "terminal")."""
        return self.is_true(ConditionType.COMPLETE) or self.is_true(ConditionType.FAILED)


def read_status(raw: Any) -> TalkingVideoStatus:
    """The status as stored: one written by an older operator may hold fields since removed,
    or values no longer allowed; those are dropped (and rewritten), the rest is kept."""
    if not raw:
        return TalkingVideoStatus()
    try:
        return TalkingVideoStatus.model_validate(raw)
    except ValidationError:
        pass
    kept: dict[str, Any] = {}
    for key, value in dict(raw).items():
        try:
            TalkingVideoStatus.model_validate({key: value})
        except ValidationError:
            log.warning("dropping status.%s: not valid for this operator version", key)
            continue
        kept[key] = value
    return TalkingVideoStatus.model_validate(kept)
