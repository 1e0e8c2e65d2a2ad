"""The render request: the runner's input contract.

The operator embeds these models in the TalkingVideo spec, so the CRD schema, the
operator's `MULTITALK_REQUEST` and the runner's parser all come from this one file.
Field names on the wire are camelCase (Kubernetes style); Python attributes are
snake_case.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from multitalk.runner.rules import Rule, model_rules, publish_model_rules

EngineName = Literal["auto", "multitalk", "lite", "placeholder"]
AudioMode = Literal["sequential", "simultaneous"]
# Weights of the multitalk transformer: auto = bf16 when it fits the GPU, else fp8 where the GPU
# has fp8 tensor cores, else int8 (docs/engines/multitalk.md).
Precision = Literal["auto", "bf16", "fp8", "int8"]

# Inputs: s3://bucket/key, https://..., file://..., data:...;base64,..., or a plain path.
INPUT_SCHEMES = ("s3", "https", "file", "data")
OUTPUT_SCHEMES = ("s3", "file")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_S3 = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$")

MAX_SECONDS = 600.0  # hard ceiling for any render; the default limit is far lower

# How the request reaches a runner in a pod (the operator sets these; see docs/runner.md).
REQUEST_ENV = "MULTITALK_REQUEST"  # the request as JSON
MODEL_DIR_ENV = "MULTITALK_MODEL_DIR"  # the model cache
DEFAULT_MODEL_DIR = "/models"


def uri_scheme(uri: str) -> str:
    """'s3', 'https', 'file', 'data', or '' for a plain path."""
    match = _SCHEME.match(uri)
    # One-letter "schemes" are Windows drive letters, i.e. plain paths.
    if match is None or len(match.group(1)) == 1:
        return ""
    return match.group(1).lower()


def _check_uri(uri: str, allowed: tuple[str, ...], what: str) -> str:
    if not uri.strip():
        raise ValueError(f"{what} must not be empty")
    scheme = uri_scheme(uri)
    if scheme and scheme not in allowed:
        kinds = ", ".join(f"{s}://" if s != "data" else "data:" for s in allowed)
        raise ValueError(f"unsupported URI scheme '{scheme}:' for {what}; use {kinds} or a path")
    if scheme == "s3" and not _S3.match(uri):
        raise ValueError(f"{what} must look like s3://bucket/key, got {uri[:80]!r}")
    if scheme in ("https", "file"):
        try:
            parts = urllib.parse.urlsplit(uri)
        except ValueError as exc:  # e.g. an unclosed IPv6 bracket in the host
            raise ValueError(f"{what} is not a valid URI ({exc}), got {uri[:80]!r}") from exc
        if scheme == "https" and not parts.hostname:
            raise ValueError(f"{what} needs a host (https://host/path), got {uri[:80]!r}")
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ValueError(f"{what} must name a file on this machine (file:///path), got {uri[:80]!r}")
    if scheme in ("", "file") and "\x00" in (urllib.parse.unquote(uri) if scheme else uri):
        raise ValueError(f"{what} is a local path and cannot contain a NUL character")
    return uri


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """A validation error's location as the API server writes it: `spec.speakers[0].audio`."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{to_camel(part)}" if out else to_camel(part))
    return out


def validation_problems(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(field path, message) for each problem pydantic found, in its order."""
    return [
        (field_path(err["loc"], prefix), str(err["msg"]).removeprefix("Value error, "))
        for err in exc.errors(include_url=False)
    ]


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """'spec.video.width: must be even ...; spec.engine: ...': every problem, each with its field."""
    return "; ".join(
        f"{where or prefix or 'request'}: {message}" for where, message in validation_problems(exc, prefix)
    )


class ApiModel(BaseModel):
    """Base for every wire model: camelCase aliases, unknown fields refused, no NaN or infinity
    (Python's JSON reader accepts them; a Kubernetes object cannot hold them), `rules` checked."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        json_schema_extra=publish_model_rules,
    )
    # Cross-field rules of this model (runner/rules.py): checked here, published as CEL.
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in model_rules(type(self)):
            try:
                rule.check(self)
            except ValueError as exc:
                if rule.field_path is None:
                    raise
                # Reported at the rule's field, as the API server reports its fieldPath.
                error = PydanticCustomError("rule", str(exc).replace("{", "(").replace("}", ")"))
                details = [InitErrorDetails(type=error, loc=rule.location(), input=self)]
                raise ValidationError.from_exception_data(type(self).__name__, details) from None
        return self

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict as it travels (camelCase, no unset optionals)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


Box = tuple[float, float, float, float]  # [top, left, bottom, right] in pixels, rows first


def box_text(box: Box) -> str:
    """A box as a person wrote it: [100, 80, 300, 240]."""
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


BBOX_IN_PIXELS = Rule(
    cel="self.all(v, v >= 0.0)",
    holds=lambda box: min(box) >= 0,
    message="bbox values are pixels and must be >= 0",
)
BBOX_ORDER = Rule(
    cel="self[0] < self[2] && self[1] < self[3]",
    holds=lambda box: box[0] < box[2] and box[1] < box[3],
    message="bbox is [top, left, bottom, right] (rows first): need top < bottom and left < right",
    detail=lambda box: f"got {list(box)}",
)


class Speaker(ApiModel):
    """One voice, bound to one person in the image."""

    audio: str = Field(description="Speech for this person: s3://, https://, file://, data: or a path.")
    bbox: Annotated[Box, BBOX_IN_PIXELS, BBOX_ORDER] | None = Field(
        default=None,
        description="Box of this person's face in image pixels, rows first: [top, left, bottom, right].",
    )
    transcript: str | None = Field(
        default=None,
        max_length=5000,
        description="What is said, if known; sharpens lip sync (lite engine forced alignment).",
    )

    @field_validator("audio")
    @classmethod
    def _audio_uri(cls, v: str) -> str:
        return _check_uri(v, INPUT_SCHEMES, "audio")


class VideoSpec(ApiModel):
    """Frame size, rate and length of the video."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.durationSeconds) || self.durationSeconds <= self.maxDurationSeconds",
            holds=lambda v: v.duration_seconds is None or v.duration_seconds <= v.max_duration_seconds,
            message="durationSeconds must not exceed maxDurationSeconds",
            field_path=".durationSeconds",
            detail=lambda v: f"{v.duration_seconds} > {v.max_duration_seconds}",
        ),
    )

    width: int = Field(
        default=480,
        ge=64,
        le=1920,
        json_schema_extra={"multipleOf": 2},
        description="Width in pixels, even (H.264 4:2:0), 64..1920.",
    )
    height: int = Field(
        default=480,
        ge=64,
        le=1920,
        json_schema_extra={"multipleOf": 2},
        description="Height in pixels, even (H.264 4:2:0), 64..1920.",
    )
    fps: int = Field(default=25, ge=1, le=60, description="Frames per second.")
    max_duration_seconds: float = Field(
        default=60.0,
        gt=0,
        le=MAX_SECONDS,
        description="Refuse speech longer than this (seconds); checked before decoding.",
    )
    duration_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="Force the video length: trims the speech or pads it with silence. Default: the speech's length.",
    )

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even (H.264 with 4:2:0 chroma needs even sizes), got {v}")
        return v


INSIDE_MODEL_CACHE = Rule(
    cel="!self.matches('(^|/)[.][.](/|$)')",
    holds=lambda path: ".." not in path.split("/"),
    message="must stay inside the model cache (no '..')",
)


class Lora(ApiModel):
    """A LoRA merged into the model before sampling."""

    path: Annotated[str, INSIDE_MODEL_CACHE] = Field(
        min_length=1,
        max_length=512,
        pattern=r"^[^/\\][^\\]*\.safetensors$",
        description="Path of a .safetensors file relative to the model cache.",
    )
    scale: float = Field(default=1.0, ge=0.0, le=4.0, description="Strength of the LoRA.")


class SamplingSpec(ApiModel):
    """Diffusion sampling parameters (multitalk engine); other engines use the seed only."""

    steps: int = Field(default=40, ge=1, le=100, description="Sampling steps (4-8 with a speed LoRA).")
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="Random seed.")
    text_guidance: float = Field(default=5.0, ge=0.0, le=20.0, description="Text classifier-free guidance scale.")
    audio_guidance: float = Field(default=4.0, ge=0.0, le=20.0, description="Audio classifier-free guidance scale.")
    shift: float = Field(
        default=7.0,
        gt=0.0,
        le=20.0,
        description="Flow-matching timestep shift (7 at 480p, 11 at 720p, 2 with speed LoRAs).",
    )
    tea_cache: float = Field(
        default=0.0, ge=0.0, le=1.0, description="TeaCache threshold; 0 turns it off, 0.2-0.5 trades quality for speed."
    )
    loras: list[Lora] = Field(default_factory=list, max_length=4, description="LoRAs to merge, in order.")
    precision: Precision = Field(
        default="auto",
        description=(
            "Transformer weights: bf16; fp8 (e4m3 weights and matmuls, GPUs of compute capability 8.9+); "
            "int8 (weight-only, any GPU); auto: bf16 when it fits the GPU, else fp8 where supported, else int8."
        ),
    )


class LiteSpec(ApiModel):
    """Knobs of the CPU lite engine."""

    expression: float = Field(
        default=1.0, ge=0.0, le=2.0, description="Strength of mouth and jaw motion (1 = natural)."
    )
    head_motion: float = Field(
        default=1.0, ge=0.0, le=2.0, description="Amount of head sway following speech energy (0 = still)."
    )
    blinks_per_minute: float = Field(default=15.0, ge=0.0, le=60.0, description="Average blink rate.")


class OutputSpec(ApiModel):
    """Where the video goes; a poster PNG and a JSON manifest are written next to it."""

    uri: str = Field(description="Destination of the MP4: s3://bucket/key.mp4, file:// or a path.")
    overwrite: bool = Field(
        default=False, description="Replace an existing video at uri; when false the render is refused."
    )

    @field_validator("uri")
    @classmethod
    def _output_uri(cls, v: str) -> str:
        _check_uri(v, OUTPUT_SCHEMES, "output.uri")
        if not v.lower().endswith(".mp4"):
            raise ValueError(f"must end in .mp4, got {v[-40:]!r}")
        return v


class StorageSpec(ApiModel):
    """S3 endpoint; credentials come from the environment (AWS_ACCESS_KEY_ID, ...), never from here."""

    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        description="S3 endpoint URL, e.g. http://minio.minio:9000; default AWS.",
    )
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$", description="S3 region, e.g. us-east-1.")


class RenderRequest(ApiModel):
    """Everything needed to render one talking video.

    The one declaration of the render fields: the TalkingVideo spec (operator/api.py)
    inherits them, the CRD schema is generated from it, and the CLI's flags are derived
    from it (runner/flags.py). A new render field added here appears in all three.
    """

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.image) || !has(self.sourceVideo)",
            holds=lambda r: r.image is None or r.source_video is None,
            message=(
                "give either image (animate a portrait) or sourceVideo (dub a video), not both: "
                "a dub takes every frame from its source video"
            ),
            field_path=".sourceVideo",
        ),
        Rule(
            cel=("size(self.speakers) < 2 || has(self.image) || has(self.sourceVideo) || self.engine == 'placeholder'"),
            holds=lambda r: (
                len(r.speakers) < 2 or r.image is not None or r.source_video is not None or r.engine == "placeholder"
            ),
            message="two speakers need an image (or sourceVideo) with two people (image is missing)",
            field_path=".image",
        ),
        # A box outside the image is refused when the runner has the image (runner/image.py).
        Rule(
            cel=(
                "size(self.speakers) < 2 || !has(self.speakers[0].bbox) || !has(self.speakers[1].bbox)"
                " || self.speakers[0].bbox != self.speakers[1].bbox"
            ),
            holds=lambda r: (
                len(r.speakers) < 2 or r.speakers[0].bbox is None or r.speakers[1].bbox != r.speakers[0].bbox
            ),
            message=(
                "speakers[1].bbox is the same box as speakers[0].bbox; each speaker is a different person: "
                "give each one the box of their own face"
            ),
            field_path=".speakers",
            detail=lambda r: box_text(r.speakers[1].bbox),
        ),
    )

    engine: EngineName = Field(default="auto", description="auto picks the best engine available where it runs.")
    allow_fallback: bool = Field(
        default=False, description="With an explicit engine: may a weaker engine stand in when it is unavailable?"
    )
    image: str | None = Field(
        default=None, description="Reference portrait (jpeg/png/webp): s3://, https://, file://, data: or a path."
    )
    source_video: str | None = Field(
        default=None,
        description=(
            "Video to dub instead of a portrait (mp4, mov, mkv, webm): s3://, https://, file://, data: or a path. "
            "The output keeps its frames and motion outside the face and takes its length from the speech; "
            "past the source's end its last frame is held. Boxes are in its (upright) pixels."
        ),
    )
    speakers: Sequence[Speaker] = Field(
        min_length=1, max_length=2, description="One or two voices; speaker i drives person i."
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
    output: OutputSpec = Field(description="Where the MP4 (and its poster and manifest) go.")
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="S3 endpoint and region (credentials come from the environment)."
    )

    @field_validator("image")
    @classmethod
    def _image_uri(cls, v: str | None) -> str | None:
        return None if v is None else _check_uri(v, INPUT_SCHEMES, "image")

    @field_validator("source_video")
    @classmethod
    def _source_video_uri(cls, v: str | None) -> str | None:
        return None if v is None else _check_uri(v, INPUT_SCHEMES, "sourceVideo")


def canonical_json(request: RenderRequest) -> str:
    """The request as it travels to a pod: compact and key-sorted, so equal requests have equal text."""
    return json.dumps(request.wire(), separators=(",", ":"), sort_keys=True)


def canonical_hash(request: RenderRequest) -> str:
    """The request's identity: the operator's Job annotation and the runner's resume key."""
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()
