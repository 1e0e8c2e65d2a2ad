"""Dubbing (sourceVideo) through the real runner CLI with the multitalk engine: InfiniteTalk mode, on the CPU."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from multitalk.runner.engines.multitalk import model_files
from multitalk.runner.engines.multitalk.engine import source_index

from . import tiny_cache
from .test_engine import decoded_frames, render, write_wav


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cache.build(tmp_path_factory.mktemp("models"))


def write_source(path: Path, seconds: float, fps: int = 25, size: tuple[int, int] = (96, 64)) -> Path:
    """An H.264 clip whose brightness ramps frame by frame (so each window's conditioning frame differs)."""
    rng = np.random.default_rng(4)
    base = rng.integers(0, 200, (size[1], size[0], 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(round(seconds * fps)):
            frame = np.clip(base.astype(np.int32) + 2 * i, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def dub_request(tmp_path: Path, seconds: float, source_seconds: float, fps: int) -> dict[str, object]:
    return {
        "engine": "multitalk",
        "sourceVideo": str(write_source(tmp_path / "source.mp4", source_seconds)),
        "speakers": [{"audio": str(write_wav(tmp_path / "a.wav", seconds))}],
        "prompt": "a man talks to the camera",
        "video": {"width": 64, "height": 64, "fps": fps},
        "sampling": {"steps": 2, "seed": 5, "textGuidance": 1.0},
        "output": {"uri": str(tmp_path / "dub.mp4")},
    }


def test_dub_streams_infinitetalk_windows(tmp_path: Path, cache: Path) -> None:
    # 3.4 s of speech: 85 frames at 25 fps, two 81-frame windows (9 motion frames); the 2 s
    # source ends inside the second window, whose conditioning frame (72) is then its last.
    proc, result = render(tmp_path, cache, dub_request(tmp_path, 3.4, 2.0, fps=10))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MeiGen-InfiniteTalk" in result["engine"]["models"]
    frames = decoded_frames(tmp_path / "dub.mp4")
    assert len(frames) == 34 and frames[0].shape == (64, 64, 3)


def test_dub_without_infinitetalk_weights_is_refused(tmp_path: Path, cache: Path) -> None:
    partial = tmp_path / "models"
    partial.mkdir()
    for entry in cache.iterdir():
        if entry.name != model_files.INFINITETALK_DIR:
            (partial / entry.name).symlink_to(entry)
    proc, result = render(tmp_path, partial, dub_request(tmp_path, 0.5, 1.0, fps=25))
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert result["error"]["field"] == "sourceVideo"
    assert "single/infinitetalk.safetensors" in result["error"]["message"]
    assert not (tmp_path / "dub.mp4").exists()


def test_source_frames_on_the_model_grid() -> None:
    """Model frame k (25 fps) conditions on the output frame shown at k / 25 s."""
    assert [source_index(k, 10) for k in (0, 1, 2, 3, 72)] == [0, 0, 1, 1, 29]
    assert [source_index(k, 25) for k in (0, 72, 144)] == [0, 72, 144]
    assert [source_index(k, 50) for k in (0, 1, 72)] == [0, 2, 144]
