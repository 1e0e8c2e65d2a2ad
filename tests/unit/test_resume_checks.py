"""Which checkpoints a resume may use (runner/resume.py): only whole, verified windows of this render."""

from __future__ import annotations

import numpy as np

from multitalk.runner.resume import RenderIdentity, RestoredWindow, WindowRecorder, checked_window, scratch_uri

RENDER = RenderIdentity(
    request_sha256="ab" * 32,
    engine="placeholder",
    runner_version="1.0",
    width=64,
    height=32,
    fps=25,
    frames=100,
    window_frames=81,
)


def window(n_frames: int = 81, first: int = 0, index: int = 0, render: RenderIdentity = RENDER) -> tuple[bytes, bytes]:
    rec = WindowRecorder(index, first)
    rng = np.random.default_rng(index)
    for _ in range(n_frames):
        rec.add(rng.integers(0, 256, (48, 64), dtype=np.uint8))
    rec.poster_png = b"png" if first <= 50 < first + n_frames else None
    data, manifest = rec.pack(render, b"state")
    return data, manifest.model_dump_json(by_alias=True).encode()


def test_scratch_sits_next_to_the_output_keyed_by_the_request() -> None:
    assert scratch_uri("s3://b/renders/a/v.mp4", "f" * 64) == f"s3://b/renders/a/.multitalk-resume/{'f' * 64}/"
    assert scratch_uri("out/v.mp4", "0" * 64) == f"out/.multitalk-resume/{'0' * 64}/"
    assert scratch_uri("v.mp4", "0" * 64) == f"./.multitalk-resume/{'0' * 64}/"


def test_a_whole_window_round_trips() -> None:
    data, manifest = window()
    got = checked_window(manifest, data, RENDER, 0, 0)
    assert isinstance(got, RestoredWindow)
    rng = np.random.default_rng(0)
    for planes in got.planes():
        assert np.array_equal(planes, rng.integers(0, 256, (48, 64), dtype=np.uint8))
    assert (got.end, got.state, got.poster_png) == (81, b"state", b"png")


def test_a_torn_or_foreign_checkpoint_is_refused() -> None:
    data, manifest = window()
    assert "unreadable" in str(checked_window(manifest[: len(manifest) // 2], data, RENDER, 0, 0))
    assert "checksum" in str(checked_window(manifest, data[:-1], RENDER, 0, 0))
    assert "missing" in str(checked_window(manifest, None, RENDER, 0, 0))
    other = RENDER.model_copy(update={"engine": "lite"})
    assert "another render" in str(checked_window(manifest, data, other, 0, 0))
    longer = RENDER.model_copy(update={"frames": 120})
    assert "another render" in str(checked_window(manifest, data, longer, 0, 0))


def test_a_window_must_continue_the_previous_one() -> None:
    data, manifest = window(19, first=81, index=1)
    assert isinstance(checked_window(manifest, data, RENDER, 1, 81), RestoredWindow)
    assert "covers frames 81+19, expected 0+81" in str(checked_window(manifest, data, RENDER, 0, 0))
    short, short_manifest = window(10, first=81, index=1)  # the last window must reach the end
    assert "expected 81+19" in str(checked_window(short_manifest, short, RENDER, 1, 81))
