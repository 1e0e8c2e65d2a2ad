"""The MP4 writer, with its writer thread and without: every frame lands in order, encoded with the
BT.601 matrix it is tagged with, and the caller may reuse its frame buffer once write() returns.
(x264 with frame threads is not bit-exact from run to run, so frames are compared, not bytes.)"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from multitalk.runner.encode import Mp4Writer

W, H, FPS, RATE = 96, 64, 25, 16000


def _frames(count: int) -> list[npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return [np.roll(base, 3 * i, axis=1) for i in range(count)]


def _write(path: Path, frames: list[npt.NDArray[np.uint8]], background: bool, reuse: bool = False) -> None:
    audio = (0.3 * np.sin(np.arange(len(frames) * RATE // FPS) * 0.05)).astype(np.float32)
    buffer = np.zeros((H, W, 3), np.uint8)
    with Mp4Writer(path, W, H, FPS, audio, RATE, preset="veryfast", background=background) as writer:
        for frame in frames:
            if reuse:  # an engine that draws every frame into the same buffer
                buffer[:] = frame
                writer.write(buffer)
                buffer[:] = 0  # scribbled over right after write() returned
            else:
                writer.write(frame)


def _luma(path: Path) -> list[npt.NDArray[np.float32]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.colorspace in (5, 6)  # BT.601 (bt470bg / smpte170m)
        return [f.to_ndarray(format="yuv420p")[:H].astype(np.float32) for f in c.decode(stream)]


def _expected_luma(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """BT.601, limited range (16..235)."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return (16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255).astype(np.float32)


def _error(path: Path, frames: list[npt.NDArray[np.uint8]]) -> list[float]:
    """Mean luma error of each decoded frame against its source (a few levels at CRF 20 on
    these random 8x8 blocks; BT.709 would be off by about 8, the neighbouring frame by about 18)."""
    decoded = _luma(path)
    assert len(decoded) == len(frames)
    return [float(np.mean(np.abs(y - _expected_luma(rgb)))) for rgb, y in zip(frames, decoded, strict=True)]


@pytest.mark.parametrize("background", [True, False])
def test_each_frame_is_encoded_as_bt601(tmp_path: Path, background: bool) -> None:
    frames = _frames(30)
    _write(tmp_path / "v.mp4", frames, background)
    assert max(_error(tmp_path / "v.mp4", frames)) < 3.0


@pytest.mark.parametrize("background", [True, False])
def test_frame_buffer_is_free_after_write(tmp_path: Path, background: bool) -> None:
    frames = _frames(30)
    _write(tmp_path / "reused.mp4", frames, background, reuse=True)
    assert max(_error(tmp_path / "reused.mp4", frames)) < 3.0
