"""Source videos for the dubbing tests, written with PyAV (FFmpeg's encoders), as a phone or an
editor would write them: constant or variable frame rate, a rotation tag, 4K, audio only."""

from __future__ import annotations

import struct
import wave
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
TIME_BASE = Fraction(1, 1000)  # milliseconds


def level_of(index: int) -> int:
    """The grey level that marks source frame `index` (readable after H.264 and scaling)."""
    return 16 + 8 * index


def marked_frame(index: int, width: int, height: int) -> Image:
    """A flat frame whose grey level says its index, with a red block in its top-left corner."""
    frame = np.full((height, width, 3), level_of(index), dtype=np.uint8)
    frame[: height // 4, : width // 4] = (230, 20, 20)
    return frame


def index_of(frame: Image) -> int:
    """Which marked frame this is, read from the grey level of its bottom-right quarter."""
    h, w = frame.shape[:2]
    return round((float(frame[h // 2 :, w // 2 :].mean()) - 16) / 8)


def write_video(path: Path, frames: Iterable[Image], fps: int = 25, times_ms: Sequence[int] | None = None) -> Path:
    """H.264 in MP4; times_ms gives each frame's presentation time (variable frame rate)."""
    with av.open(str(path), "w") as container:
        stream: av.video.stream.VideoStream | None = None
        for i, frame in enumerate(frames):
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.time_base = TIME_BASE
                stream.options = {"preset": "ultrafast", "crf": "12"}
            out = av.VideoFrame.from_ndarray(frame, format="rgb24")
            out.pts = times_ms[i] if times_ms is not None else round(i * 1000 / fps)
            out.time_base = TIME_BASE
            container.mux(stream.encode(out))
        assert stream is not None, "no frames"
        container.mux(stream.encode())
    return path


def rotate_tag(data: bytes, clockwise_degrees: int) -> bytes:
    """The same MP4 with its track's display matrix set to turn the picture clockwise, as phones
    record: the pixels stay stored sideways and players rotate them."""
    matrices = {
        90: (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30),
        180: (-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30),
        270: (0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30),
    }
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0, "expected a version-0 track header"
    offset = at + 4 + 4 + 20 + 8 + 8  # version/flags, times/id/duration, reserved, layer..volume
    return data[:offset] + struct.pack(">9i", *matrices[clockwise_degrees]) + data[offset + 36 :]


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    t = np.arange(round(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return path
