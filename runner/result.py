"""The result JSON the runner leaves in the termination log (at most 4 KiB).

The operator copies these sections into the TalkingVideo status as they are, so the
status models reuse them.
"""

from __future__ import annotations

from pydantic import Field

from multitalk.runner.errors import FailureReason
from multitalk.runner.request import ApiModel

MAX_RESULT_BYTES = 4096
RESULT_PATH_ENV = "MULTITALK_RESULT_PATH"  # where the runner writes it (set by the operator)
TERMINATION_LOG = "/dev/termination-log"  # the default: the kubelet copies it into the pod status


class EngineReport(ApiModel):
    requested: str = Field(description="Engine asked for (auto, multitalk, lite, placeholder).")
    name: str | None = Field(default=None, description="Engine that ran.")
    fallback_reason: str | None = Field(default=None, description="Why a different engine than requested ran.")
    device: str | None = Field(default=None, description="cpu, cuda:0, ...")
    precision: str | None = Field(default=None, description="fp32, bf16, ...")
    models: list[str] = Field(default_factory=list, description="Model files or ids used.")
    version: str | None = Field(default=None, description="Runner version.")


class Timings(ApiModel):
    """Seconds spent in each stage (generate and encode interleave; each counts its own share)."""

    download_seconds: float | None = None
    model_load_seconds: float | None = None
    feature_seconds: float | None = None
    generate_seconds: float | None = None
    encode_seconds: float | None = None
    upload_seconds: float | None = None
    checkpoint_seconds: float | None = None  # writing checkpoints and restoring them (docs/runner.md, Resuming)
    total_seconds: float | None = None


class AudioReport(ApiModel):
    duration_seconds: float = Field(description="Length of the (mixed) speech in seconds.")
    sample_rate: int = Field(description="Sample rate of the muxed speech in Hz.")
    feature_shape: list[int] | None = Field(default=None, description="Shape of the engine's audio features, if any.")


class OutputReport(ApiModel):
    uri: str
    size_bytes: int
    sha256: str
    duration_seconds: float
    width: int
    height: int
    fps: int
    frames: int
    poster_uri: str | None = None
    manifest_uri: str | None = None


class ResumeReport(ApiModel):
    """Checkpointed windows (docs/runner.md, Resuming); absent for an engine that cannot resume."""

    windows_done: int = Field(description="Windows finished and checkpointed, restored ones included.")
    windows_total: int = Field(description="Windows in the whole video.")
    window_frames: int = Field(description="Frames per window (the last may be shorter).")
    resumed_from_frame: int = Field(description="First frame this attempt generated (0: none restored).")


class FailureReport(ApiModel):
    reason: str = Field(description=f"{', '.join(FailureReason)} (one per exit code).")
    message: str
    field: str | None = Field(default=None, description="Request field the failure concerns.")


class RunResult(ApiModel):
    ok: bool
    exit_code: int
    engine: EngineReport | None = None
    timings: Timings = Field(default_factory=Timings)
    audio: AudioReport | None = None
    output: OutputReport | None = None
    resume: ResumeReport | None = None
    error: FailureReport | None = None

    def to_json(self) -> str:
        """Compact JSON; long messages are shortened so the whole stays within 4 KiB."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode()) <= MAX_RESULT_BYTES or self.error is None:
            return text
        budget = max(64, len(self.error.message) - (len(text.encode()) - MAX_RESULT_BYTES) - 16)
        short = self.error.model_copy(update={"message": self.error.message[:budget] + "..."})
        return self.model_copy(update={"error": short}).model_dump_json(by_alias=True, exclude_none=True)
