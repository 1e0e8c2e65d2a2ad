"""The engine interface: decoded inputs in, a stream of RGB frames out.

The runner does all I/O (download, decode, encode, upload); an engine only turns
prepared speech and a prepared portrait into frames. Frames are yielded one by one so
the encoder can consume them as they come and memory stays flat in the video's length.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from multitalk.runner.request import RenderRequest

Image = npt.NDArray[np.uint8]  # H x W x 3 RGB
Audio = npt.NDArray[np.float32]  # mono samples in [-1, 1]

ENGINE_SAMPLE_RATE = 16_000  # engines get mono float32 speech at this rate

ProgressFn = Callable[[float], None]  # fraction 0..1 of the engine's current stage

# Frames per resume checkpoint unless an engine sets its own (docs/runner.md, Resuming): 81, about 3 s
# at 25 fps, the length of a MultiTalk window (which checkpoints per window's new frames instead).
WINDOW_FRAMES = 81


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run here, and why not."""

    available: bool
    reason: str = ""
    details: dict[str, object] = field(default_factory=dict)
    # A setting of the engine is wrong (names the variable in `reason`): never skipped for a
    # weaker engine, a render that would use it fails with exit 4.
    misconfigured: bool = False


class SourceFrames(Protocol):
    """A source video on the output's frame grid (runner/video_source.py), for dubbing."""

    def frame(self, index: int) -> Image:
        """Output frame index of the source, fitted to width x height; its last frame past its end."""
        ...


@dataclass(frozen=True)
class RenderInputs:
    """Prepared inputs, identical for every engine."""

    request: RenderRequest
    image: Image | None  # H x W x 3 uint8, already fitted to video width x height (a dub: its first frame)
    speech: tuple[Audio, ...]  # per speaker, mono float32 at 16 kHz, placed on the video timeline
    mix: Audio  # all speakers mixed (audioMode applied), mono float32 at 16 kHz
    width: int
    height: int
    fps: int
    frames: int  # round(duration * fps)
    duration_seconds: float
    model_dir: Path  # model cache root (may not exist)
    source: SourceFrames | None = None  # sourceVideo, when the request dubs a video


@dataclass(frozen=True)
class EngineInfo:
    """What the result reports about the engine that ran."""

    device: str = "cpu"
    precision: str = "fp32"
    models: tuple[str, ...] = ()
    feature_shape: tuple[int, ...] | None = None


class Engine(ABC):
    """One way of animating a portrait; selected by name through the registry."""

    name: str = ""  # its key in engines/registry.py, whose order is auto's preference
    # Can frames() start mid-video (from a checkpoint) and yield what an uninterrupted call yields
    # from there? The runner checkpoints every window_frames frames only for engines that can.
    resumable: bool = False
    window_frames: int = WINDOW_FRAMES

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir

    @abstractmethod
    def availability(self) -> Availability:
        """Cheap check (no model loading): can this engine run here?"""

    def validate(self, request: RenderRequest) -> None:
        """Raise InvalidInput for requests this engine cannot honour (before any download)."""

    def load(self, request: RenderRequest) -> None:
        """Load models for this request (precision, LoRAs, ranks); timed as modelLoadSeconds."""

    def prepare(self, inputs: RenderInputs, progress: ProgressFn) -> EngineInfo:
        """Audio features, face analysis, ...; timed as featureSeconds."""
        return EngineInfo()

    @abstractmethod
    def frames(self, inputs: RenderInputs, progress: ProgressFn, start: int = 0, state: bytes = b"") -> Iterator[Image]:
        """Yield frames start .. inputs.frames - 1, each H x W x 3 uint8 RGB.

        start > 0 only for a resumable engine, with the window_state() it gave after frame start - 1."""

    def window_state(self) -> bytes:
        """What the frames after the last one yielded need (motion frames, RNG state ...), called at a
        window's end while frames() is suspended; nothing when each frame depends only on prepare()
        and its index."""
        return b""

    def check_state(self, state: bytes, start: int) -> str | None:
        """Why a checkpointed window_state() cannot resume at frame `start` (None: it can). Asked of
        each restored window before it is used, so a state this engine refuses ends the restore
        there rather than failing the render."""
        return None

    def close(self) -> None:
        """Release models and native resources; the runner calls it once, after the last frame or on failure."""
