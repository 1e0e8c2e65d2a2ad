"""The TalkingVideo API (multitalk.dev/v1alpha1): names and the spec.

The spec *is* the runner's request plus what only the cluster needs: `TalkingVideoSpec`
inherits the render fields from `RenderRequest` (runner/request.py) and narrows a few to
what works in a pod (inputs from S3, HTTPS or data:, the video to S3, a Secret for the
credentials); the runner container, scheduling, model cache and Job knobs are added here.
So the CRD schema (crd.py), the operator's MULTITALK_REQUEST and the runner's parser cannot
drift apart, and a render field added to the request appears in the CRD by itself.

Rules with a Python and a CEL form are `Rule`s (runner/rules.py): the operator judges an
object the API server did not (no CRD validation, or an older CRD) exactly as the API
server would, and ends it in Failed/InvalidSpec instead of creating a Job.
The status models are in status_types.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from multitalk.runner.request import (
    DEFAULT_MODEL_DIR,
    REQUEST_ENV,
    ApiModel,
    OutputSpec,
    RenderRequest,
    Speaker,
    StorageSpec,
    describe_validation_error,
)
from multitalk.runner.result import RESULT_PATH_ENV
from multitalk.runner.rules import Rule

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
# Videos are too large to inline: S3 or HTTPS only.
CLUSTER_REMOTE_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|https://[^\s/]+/.*)$"
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
RESERVED_ENV = (REQUEST_ENV, RESULT_PATH_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", *RANK_ENV)
NOT_RESERVED = Rule(
    cel=f"!(self in [{', '.join(repr(name).replace(chr(39), chr(34)) for name in RESERVED_ENV)}])",
    holds=lambda name: name not in RESERVED_ENV,
    message="is set by the operator and cannot be overridden",
    detail=lambda name: name,
)
MAX_GPUS = 8  # one pod, one node: the runner's ranks meet over NVLink/PCIe, never the network
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# Marks schema nodes whose content is Kubernetes' own (affinity, valueFrom ...): kept as-is.
FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


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

    name: Annotated[str, NOT_RESERVED] = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description=(
            f"Variable name; {', '.join(RESERVED_ENV[:2])}, the AWS keys and the rank environment "
            f"({', '.join(RANK_ENV)}) are set by the operator."
        ),
    )
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="A Pod EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef ...).",
        json_schema_extra=FREE_FORM,
    )


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
        default=DEFAULT_MODEL_DIR, pattern=r"^/[^:]*$", max_length=256, description="Where the runner sees it."
    )


# Every spec field except these gets a CEL `self == oldSelf` transition rule (crd.py): a
# new render is a new object.
MUTABLE_FIELDS = ("suspend", "pending_deadline_seconds")


class TalkingVideoSpec(RenderRequest):
    """A talking video to render: speech + portrait in, H.264 MP4 out. Immutable except suspend."""

    # The render fields (engine ... storage) are RenderRequest's; four are narrowed here to
    # what works in a cluster. Everything after `storage` shapes the Job.

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!self.allowFallback || self.engine != 'auto'",
            holds=lambda spec: not (spec.allow_fallback and spec.engine == "auto"),
            message="allowFallback needs an explicit engine (auto already picks what is available)",
            field_path=".allowFallback",
        ),
    )

    image: str | None = Field(
        default=None,
        max_length=MAX_INLINE_IMAGE,
        json_schema_extra={"pattern": CLUSTER_INPUT_PATTERN},
        description="Reference portrait (jpeg/png/webp): s3://bucket/key, https://... or a data: URI (<= 48 KiB).",
    )
    source_video: str | None = Field(
        default=None,
        max_length=1024,
        json_schema_extra={"pattern": CLUSTER_REMOTE_PATTERN},
        description=(
            "Video to dub instead of a portrait (mp4, mov, mkv, webm): s3://bucket/key or https://... "
            "The output keeps its frames outside the face and takes its length from the speech; past the "
            "source's end its last frame is held."
        ),
    )
    speakers: Sequence[ClusterSpeaker] = Field(
        min_length=1, max_length=2, description="One or two voices; speaker i drives person i in the image."
    )
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

    @field_validator("source_video")
    @classmethod
    def _cluster_source_video(cls, v: str | None) -> str | None:
        if v is not None and not re.match(CLUSTER_REMOTE_PATTERN, v):
            raise ValueError(f"sourceVideo must be s3://bucket/key or https://... in a cluster, got {v[:60]!r}")
        return v

    @model_validator(mode="after")
    def _inline_inputs_fit(self) -> TalkingVideoSpec:
        # Python only: CEL cannot sum over a list. Each input's own maxLength is in the schema.
        inline = len(self.image or "") + sum(len(s.audio) for s in self.speakers)
        if inline > MAX_INLINE_TOTAL:
            raise ValueError(
                f"inline data: inputs total {inline} bytes; at most {MAX_INLINE_TOTAL} fit in the runner's "
                "environment. Upload larger files to S3 and use s3:// or https:// URIs"
            )
        return self


# --- spec -> request ------------------------------------------------------------------------


def render_request(spec: TalkingVideoSpec) -> RenderRequest:
    """The runner's request (MULTITALK_REQUEST): the render fields, storage without the secret."""
    data = spec.model_dump(include=set(RenderRequest.model_fields), exclude={"storage": {"secret_ref"}})
    return RenderRequest.model_validate(data)


class InvalidSpecError(ValueError):
    """A spec the operator cannot render; the message names the fields."""


def parse_spec(raw: Any) -> TalkingVideoSpec:
    """Validate a spec dict as it comes from the API (camelCase); raises InvalidSpecError."""
    try:
        return TalkingVideoSpec.model_validate(raw or {})
    except ValidationError as exc:
        raise InvalidSpecError(describe_validation_error(exc, "spec")) from exc
