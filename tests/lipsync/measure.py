"""Render a clip through the runner's pipeline and measure the mouth on the decoded MP4.

The detector is mediapipe's attention face mesh (`refine_landmarks=True`, its own network with
refined lip contours, in video mode), run on the H.264 frames a user would download. The
engine itself runs the plain face mesh once, on the photo, to build its warp: the measurement
never reads the engine's mouth track.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from lipsync.espeak import Utterance
from multitalk.runner.pipeline import Pipeline
from multitalk.runner.request import RenderRequest

PAD_SECONDS = 0.5  # silence either side of the speech, like a recording
# Inner-lip pairs (upper, lower) around the middle of the mouth, and the face's height.
_INNER_PAIRS = ((13, 14), (82, 87), (312, 317))
_FOREHEAD, _CHIN = 10, 152


def write_wav(utterance: Utterance, path: Path) -> npt.NDArray[np.float32]:
    """The utterance with its silences, as a 16-bit WAV; returns it at 16 kHz (for alignment)."""
    pad = np.zeros(round(PAD_SECONDS * utterance.rate), dtype=np.int16)
    pcm = np.concatenate([pad, utterance.audio, pad])
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(utterance.rate)
        wav.writeframes(pcm.tobytes())
    gcd = np.gcd(utterance.rate, 16_000)
    audio: npt.NDArray[np.float32] = resample_poly(
        pcm.astype(np.float32) / 32768, 16_000 // gcd, utterance.rate // gcd
    ).astype(np.float32)
    return audio


def render(
    audio: Path, image: Path, out: Path, transcript: str | None, size: int = 480, model_dir: Path | None = None
) -> None:
    speaker: dict[str, Any] = {"audio": str(audio)}
    if transcript:
        speaker["transcript"] = transcript
    request = RenderRequest.model_validate(
        {
            "engine": "lite",
            "image": str(image),
            "speakers": [speaker],
            "video": {"width": size, "height": size, "fps": 25},
            "output": {"uri": str(out), "overwrite": True},
        }
    )
    Pipeline(request, model_dir or out.parent / "no-model-cache").run()


@dataclass(frozen=True)
class Measured:
    aperture: npt.NDArray[np.float64]  # inner-lip gap / face height per frame (NaN: no face found)
    fps: float


class MouthMeter:
    """The independent detector; create once, measure many videos."""

    def __init__(self) -> None:
        from mediapipe.python.solutions import face_mesh

        self._face_mesh = face_mesh

    def measure(self, video: Path) -> Measured:
        values = []
        mesh = self._face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
        )
        try:
            with av.open(str(video)) as container:
                stream = container.streams.video[0]
                fps = float(stream.average_rate or 25)
                for frame in container.decode(stream):
                    values.append(self._aperture(mesh, frame.to_ndarray(format="rgb24")))
        finally:
            mesh.close()
        return Measured(np.array(values, dtype=np.float64), fps)

    @staticmethod
    def _aperture(mesh: Any, rgb: npt.NDArray[np.uint8]) -> float:
        result = mesh.process(rgb)
        if not result.multi_face_landmarks:
            return float("nan")
        h, w = rgb.shape[:2]
        marks = result.multi_face_landmarks[0].landmark
        pts = np.array([(m.x * w, m.y * h) for m in marks])
        height = float(np.linalg.norm(pts[_CHIN] - pts[_FOREHEAD]))
        gap = np.mean([pts[lo, 1] - pts[up, 1] for up, lo in _INNER_PAIRS])
        return max(float(gap), 0.0) / max(height, 1e-6)
