"""The render request: the runner's input contract.

The operator embeds these models in the TalkingVideo spec, so the CRD schema, the
operator's `MULTITALK_REQUEST` and the runner's parser all come from this one file.
Field names on the wire are camelCase (Kubernetes style); Python attributes are
snake_case.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

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
    return uri


class ApiModel(BaseModel):
    """Base for every wire model: camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict as it travels (camelCase, no unset optionals)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Speaker(ApiModel):
    """One voice, bound to one person in the image."""

    audio: str = Field(description="Speech for this person: s3://, https://, file://, data: or a path.")
    bbox: tuple[float, float, float, float] | None = Field(
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

    @field_validator("bbox")
    @classmethod
    def _bbox_order(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is None:
            return v
        top, left, bottom, right = v
        if min(v) < 0:
            raise ValueError("bbox values are pixels and must be >= 0")
        if not (top < bottom and left < right):
            raise ValueError(
                f"bbox is [top, left, bottom, right] (rows first): need top < bottom and left < right, got {list(v)}"
            )
        return v


class VideoSpec(ApiModel):
    """Frame size, rate and length of the video."""

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

    @model_validator(mode="after")
    def _duration_within_max(self) -> VideoSpec:
        if self.duration_seconds is not None and self.duration_seconds > self.max_duration_seconds:
            raise ValueError(
                f"durationSeconds ({self.duration_seconds}) exceeds maxDurationSeconds ({self.max_duration_seconds})"
            )
        return self


class Lora(ApiModel):
    """A LoRA merged into the model before sampling."""

    path: str = Field(
        min_length=1,
        max_length=512,
        pattern=r"^[^/\\][^\\]*\.safetensors$",
        description="Path of a .safetensors file relative to the model cache.",
    )
    scale: float = Field(default=1.0, ge=0.0, le=4.0, description="Strength of the LoRA.")

    @field_validator("path")
    @classmethod
    def _inside_cache(cls, v: str) -> str:
        if ".." in v.split("/"):
            raise ValueError("must stay inside the model cache (no '..')")
        return v


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
    """Everything needed to render one talking video."""

    engine: EngineName = Field(default="auto", description="auto picks the best engine available here.")
    allow_fallback: bool = Field(
        default=False, description="With an explicit engine: may a weaker engine stand in when it is unavailable?"
    )
    image: str | None = Field(
        default=None, description="Reference portrait (jpeg/png/webp): s3://, https://, file://, data: or a path."
    )
    speakers: list[Speaker] = Field(
        min_length=1, max_length=2, description="One or two voices; speaker i drives person i."
    )
    audio_mode: AudioMode = Field(
        default="sequential", description="Two speakers: take turns (sequential) or talk at once (simultaneous)."
    )
    prompt: str = Field(
        default="A person talks to the camera.", max_length=2000, description="Scene description (multitalk engine)."
    )
    video: VideoSpec = Field(default_factory=VideoSpec)
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    lite: LiteSpec = Field(default_factory=LiteSpec)
    output: OutputSpec
    storage: StorageSpec = Field(default_factory=StorageSpec)

    @field_validator("image")
    @classmethod
    def _image_uri(cls, v: str | None) -> str | None:
        return None if v is None else _check_uri(v, INPUT_SCHEMES, "image")

    @model_validator(mode="after")
    def _two_speakers_need_image(self) -> RenderRequest:
        if len(self.speakers) == 2 and self.image is None and self.engine != "placeholder":
            raise ValueError("two speakers need an image with two people (image is missing)")
        return self
