"""Helpers shared by the lite tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE, RenderInputs
from multitalk.runner.request import RenderRequest

Audio = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Speech:
    audio: Audio  # mono float32 at 16 kHz
    transcript: str


def fit(image: Image, width: int, height: int) -> Image:
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))


def make_inputs(
    image: Image,
    speeches: list[Audio],
    fps: int = 25,
    transcripts: list[str | None] | None = None,
    bboxes: list[list[float] | None] | None = None,
    lite: dict[str, Any] | None = None,
    model_dir: Path = Path("/nonexistent-model-cache"),
) -> RenderInputs:
    """RenderInputs as the runner prepares them (speech already placed on the video timeline)."""
    length = max(len(s) for s in speeches)
    tracks = tuple(np.pad(s, (0, length - len(s))).astype(np.float32) for s in speeches)
    speakers: list[dict[str, Any]] = []
    for i in range(len(speeches)):
        speaker: dict[str, Any] = {"audio": f"voice-{i}.wav"}
        if transcripts and transcripts[i]:
            speaker["transcript"] = transcripts[i]
        if bboxes and bboxes[i]:
            speaker["bbox"] = bboxes[i]
        speakers.append(speaker)
    request = RenderRequest.model_validate(
        {
            "engine": "lite",
            "image": "portrait.png",
            "speakers": speakers,
            "video": {"width": image.shape[1], "height": image.shape[0], "fps": fps},
            "lite": lite or {},
            "output": {"uri": "out/render.mp4"},
        }
    )
    duration = length / ENGINE_SAMPLE_RATE
    mix = np.clip(np.sum(tracks, axis=0), -1, 1).astype(np.float32)
    return RenderInputs(
        request=request,
        image=image,
        speech=tracks,
        mix=mix,
        width=image.shape[1],
        height=image.shape[0],
        fps=fps,
        frames=round(duration * fps),
        duration_seconds=duration,
        model_dir=model_dir,
    )
