"""The TalkingVideo API (multitalk.dev/v1alpha1): spec and status models.

One source of truth: the render fields are the runner's own request sub-models and the
status sections are the runner's result sections, so the CRD schema (crd.py), the
operator's MULTITALK_REQUEST and the runner's parser cannot drift apart. What only the
cluster needs (secret reference, runner pod, scheduling, model cache, Job knobs) is
added here. Pydantic validators mirror the CRD's CEL rules so the operator can judge an
object the API server did not (no CRD validation, or an older CRD): it then ends in
Failed/InvalidSpec instead of creating a Job.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from multitalk.runner.request import (
    ApiModel,
    AudioMode,
    EngineName,
    LiteSpec,
    OutputSpec,
    RenderRequest,
    SamplingSpec,
    Speaker,
    StorageSpec,
    VideoSpec,
)
from multitalk.runner.result import AudioReport, EngineReport, OutputReport, Timings

GROUP = "multitalk.dev"
VERSION = "v1alpha1"
KIND = "TalkingVideo"
PLURAL = "talkingvideos"
SINGULAR = "talkingvideo"
SHORT_NAMES = ["tv"]
CATEGORIES = ["multitalk"]

# In a pod a local path means nothing: inputs come from S3, HTTPS or inline data: URIs,
# the video goes to S3.
CLUSTER_INPUT_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|https://[^\s/]+/.*|data:[^,]*,.*)$"
CLUSTER_OUTPUT_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+\.mp4$"
_CLUSTER_INPUT = re.compile(CLUSTER_INPUT_PATTERN, re.DOTALL)
_CLUSTER_OUTPUT = re.compile(CLUSTER_OUTPUT_PATTERN)

# The request reaches the runner as one environment variable, and Linux refuses a single
# variable over 128 KiB (MAX_ARG_STRLEN): inline data: inputs must stay small.
MAX_INLINE_IMAGE = 48 * 1024
MAX_INLINE_AUDIO = 24 * 1024
MAX_INLINE_TOTAL = 96 * 1024

# Names the operator sets itself; a user's runner.env must not shadow them (the rank
# environment of a multi-GPU pod included).
RANK_ENV = ("WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK")
RESERVED_ENV = ("MULTITALK_REQUEST", "MULTITALK_RESULT_PATH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", *RANK_ENV)
MAX_GPUS = 8  # one pod, one node: the runner's ranks meet over NVLink/PCIe, never the network
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# Marks schema nodes whose content is Kubernetes' own (affinity, valueFrom ...): kept as-is.
FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def _input_uri(value: str, what: str) -> str:
    if not _CLUSTER_INPUT.match(value):
        raise ValueError(f"{what} must be s3://bucket/key, https://... or a data: URI in a cluster, got {value[:60]!r}")
    return value


# --- spec -----------------------------------------------------------------------------------


class ClusterSpeaker(Speaker):
    """One voice, bound to one person in the image (inputs from S3, HTTPS or data:)."""

    audio: str = Field(
        max_length=MAX_INLINE_AUDIO,
        json_schema_extra={"pattern": CLUSTER_INPUT_PATTERN},
        description="Speech for this person: s3://bucket/key, https://... or a small data: URI (<= 24 KiB).",
    )
    bbox: tuple[float, float, float, float] | None = Field(
        default=None,
        description="Box of this person's face in image pixels, rows first: [top, left, bottom, right].",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self[0] < self[2] && self[1] < self[3]",
                    "bbox is [top, left, bottom, right]: need top < bottom and left < right",
                ),
                _cel("self.all(v, v >= 0.0)", "bbox values are pixels and must be >= 0"),
            ]
        },
    )

    @field_validator("audio")
    @classmethod
    def _cluster_audio(cls, v: str) -> str:
        return _input_uri(v, "audio")


class ClusterOutputSpec(OutputSpec):
    """Where the video goes (S3); a poster PNG and a JSON manifest are written next to it."""

    uri: str = Field(
        max_length=1024,
        json_schema_extra={"pattern": CLUSTER_OUTPUT_PATTERN},
        description="Destination of the MP4: s3://bucket/key.mp4.",
    )

    @field_validator("uri")
    @classmethod
    def _cluster_output(cls, v: str) -> str:
        if not _CLUSTER_OUTPUT.match(v):
            raise ValueError(f"output.uri must be s3://bucket/key.mp4 in a cluster, got {v[:60]!r}")
        return v


class SecretRef(ApiModel):
    """A Secret in the TalkingVideo's namespace with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret.")


class ClusterStorageSpec(StorageSpec):
    """S3 endpoint and the Secret holding its credentials (read by the pod, never by the operator)."""

    secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; default: the operator's configured one.",
    )


class ResourceRequirements(ApiModel):
    """Compute resources of the runner container (as in a Pod); default: the operator's (one GPU)."""

    limits: dict[str, int | str] | None = Field(
        default=None, description="Limits, e.g. {nvidia.com/gpu: 1, memory: 48Gi}."
    )
    requests: dict[str, int | str] | None = Field(default=None, description="Requests, e.g. {cpu: 4, memory: 32Gi}.")


class EnvVar(ApiModel):
    """An extra environment variable of the runner container."""

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description=(
            "Variable name; MULTITALK_REQUEST, MULTITALK_RESULT_PATH, the AWS keys and the rank environment "
            "(WORLD_SIZE, MASTER_ADDR, MASTER_PORT, RANK, LOCAL_RANK) are set by the operator."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!(self in " + str(list(RESERVED_ENV)).replace("'", '"') + ")",
                    "is set by the operator and cannot be overridden",
                )
            ]
        },
    )
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="A Pod EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef ...).",
        json_schema_extra=FREE_FORM,
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_ENV:
            raise ValueError(f"{v} is set by the operator and cannot be overridden")
        return v


class RunnerSpec(ApiModel):
    """The runner container; every field defaults to the operator's settings."""

    image: str | None = Field(
        default=None, min_length=1, max_length=512, description="Runner image; default: the operator's."
    )
    resources: ResourceRequirements | None = Field(default=None, description="Container resources; default: one GPU.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    gpus: int | None = Field(
        default=None,
        ge=1,
        le=MAX_GPUS,
        description=(
            "GPUs in the runner pod, one rank each (1..8). Sets the nvidia.com/gpu limit (and request, if "
            "resources give one), overriding resources; more than one adds a memory-backed /dev/shm and the rank "
            "environment, and the multitalk engine splits each step over the ranks (sequence and CFG parallel). "
            "Default: the GPUs of resources (one)."
        ),
    )


class Toleration(ApiModel):
    """A Pod toleration."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class SchedulingSpec(ApiModel):
    """Where and when the runner pod may run."""

    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Kueue LocalQueue; the Job is created suspended and Kueue admits it. Default: the operator's.",
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN, description="PriorityClass of the pod."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pod requires.")
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Pod tolerations (GPU taints)."
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="A Pod Affinity, as in a Pod spec.", json_schema_extra=FREE_FORM
    )
    runtime_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="RuntimeClass, e.g. nvidia. Default: the operator's.",
    )


class ModelCacheSpec(ApiModel):
    """A PersistentVolumeClaim holding model weights, mounted read-only."""

    claim_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="PVC name in this namespace."
    )
    mount_path: str = Field(
        default="/models", pattern=r"^/[^:]*$", max_length=256, description="Where the runner sees it."
    )


# Render fields go into MULTITALK_REQUEST; the rest shapes the Job. Immutable fields
# (every spec field except MUTABLE_FIELDS) get a CEL `self == oldSelf` transition rule:
# a new render is a new object.
RENDER_FIELDS = (
    "engine",
    "allow_fallback",
    "image",
    "speakers",
    "audio_mode",
    "prompt",
    "video",
    "sampling",
    "lite",
    "output",
    "storage",
)
MUTABLE_FIELDS = ("suspend", "pending_deadline_seconds")


class TalkingVideoSpec(ApiModel):
    """A talking video to render: speech + portrait in, H.264 MP4 out. Immutable except suspend."""

    engine: EngineName = Field(default="auto", description="auto picks the best engine available on the node.")
    allow_fallback: bool = Field(
        default=False, description="With an explicit engine: may a weaker engine stand in when it is unavailable?"
    )
    image: str | None = Field(
        default=None,
        max_length=MAX_INLINE_IMAGE,
        json_schema_extra={"pattern": CLUSTER_INPUT_PATTERN},
        description="Reference portrait (jpeg/png/webp): s3://bucket/key, https://... or a data: URI (<= 48 KiB).",
    )
    speakers: list[ClusterSpeaker] = Field(
        min_length=1, max_length=2, description="One or two voices; speaker i drives person i in the image."
    )
    audio_mode: AudioMode = Field(
        default="sequential", description="Two speakers: take turns (sequential) or talk at once (simultaneous)."
    )
    prompt: str = Field(
        default="A person talks to the camera.", max_length=2000, description="Scene description (multitalk engine)."
    )
    video: VideoSpec = Field(default_factory=VideoSpec, description="Frame size, rate and length limits.")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec, description="Diffusion sampling (multitalk engine).")
    lite: LiteSpec = Field(default_factory=LiteSpec, description="Knobs of the CPU lite engine.")
    output: ClusterOutputSpec = Field(description="Where the MP4 (and its poster and manifest) go.")
    storage: ClusterStorageSpec = Field(default_factory=ClusterStorageSpec, description="S3 endpoint and credentials.")
    runner: RunnerSpec = Field(default_factory=RunnerSpec, description="Runner container image, resources and env.")
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, description="Queue, priority and node placement."
    )
    model_cache: ModelCacheSpec | None = Field(
        default=None, description="Read-only model weights PVC; default: the operator's."
    )
    suspend: bool = Field(
        default=False,
        description="Hold the render: no Job is created while true; a Job without a Kueue queue is suspended. Mutable.",
    )
    backoff_limit: int = Field(
        default=2, ge=0, le=10, description="Retries of a crashed runner (permanent errors never retry)."
    )
    active_deadline_seconds: int = Field(
        default=7200, ge=60, le=7 * 86400, description="Wall-clock limit of the Job once started, in seconds."
    )
    pending_deadline_seconds: int = Field(
        default=900,
        ge=30,
        le=86400,
        description="Fail when the runner is not running this long after admission (image pull, no GPU). Mutable.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=86400,
        ge=0,
        le=30 * 86400,
        description="Remove the finished Job and pod after this long; the TalkingVideo stays.",
    )

    @field_validator("image")
    @classmethod
    def _cluster_image(cls, v: str | None) -> str | None:
        return None if v is None else _input_uri(v, "image")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> TalkingVideoSpec:
        # Mirrors the CEL rules on the spec (crd.SPEC_RULES).
        if len(self.speakers) == 2 and self.image is None and self.engine != "placeholder":
            raise ValueError("two speakers need an image with two people (image is missing)")
        inline = len(self.image or "") + sum(len(s.audio) for s in self.speakers)
        if inline > MAX_INLINE_TOTAL:
            raise ValueError(
                f"inline data: inputs total {inline} bytes; at most {MAX_INLINE_TOTAL} fit in the runner's "
                "environment. Upload larger files to S3 and use s3:// or https:// URIs"
            )
        if self.allow_fallback and self.engine == "auto":
            raise ValueError("allowFallback needs an explicit engine (auto already picks what is available)")
        return self


# --- status ---------------------------------------------------------------------------------

Phase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed", "Suspended"]
ConditionType = Literal["Accepted", "Admitted", "Running", "Complete", "Failed"]
CONDITION_TYPES: tuple[ConditionType, ...] = ("Accepted", "Admitted", "Running", "Complete", "Failed")


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str = Field(max_length=316, description="Accepted, Admitted, Running, Complete or Failed.")
    status: Literal["True", "False", "Unknown"]
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
    stage: str = Field(description="download, load, features, generate, upload or done.")
    percent: float = Field(ge=0, le=100, description="Percent of the render done.")


class LastFailure(ApiModel):
    reason: str = Field(description="Why the last attempt failed (same vocabulary as the Failed condition).")
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
        description="Accepted, Admitted, Running, Complete, Failed (metav1.Condition).",
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
    last_failure: LastFailure | None = None


class TalkingVideo(ApiModel):
    """The whole object as the API returns it (metadata is Kubernetes')."""

    api_version: Literal["multitalk.dev/v1alpha1"] = "multitalk.dev/v1alpha1"
    kind: Literal["TalkingVideo"] = "TalkingVideo"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: TalkingVideoSpec
    status: TalkingVideoStatus | None = None


# --- spec -> request ------------------------------------------------------------------------


def render_request(spec: TalkingVideoSpec) -> RenderRequest:
    """The runner's request (MULTITALK_REQUEST): the render fields, storage without secrets."""
    data: dict[str, Any] = {}
    for name in RENDER_FIELDS:
        data[name] = getattr(spec, name)
    storage = spec.storage
    data["storage"] = StorageSpec(endpoint=storage.endpoint, region=storage.region)
    data["speakers"] = [Speaker.model_validate(s.model_dump()) for s in spec.speakers]
    data["output"] = OutputSpec.model_validate(spec.output.model_dump())
    return RenderRequest.model_validate(data)


def parse_spec(raw: Any) -> TalkingVideoSpec:
    """Validate a spec dict as it comes from the API (camelCase); raises InvalidSpecError."""
    try:
        return TalkingVideoSpec.model_validate(raw or {})
    except ValidationError as exc:
        raise InvalidSpecError(describe_validation_error(exc)) from exc


class InvalidSpecError(ValueError):
    """A spec the operator cannot render; the message names the fields."""


def describe_validation_error(exc: ValidationError, prefix: str = "spec") -> str:
    """'spec.video.width: must be even ...; spec.engine: ...' with camelCase field paths."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join([prefix, *(_camel(p) if isinstance(p, str) else str(p) for p in err["loc"])])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)
