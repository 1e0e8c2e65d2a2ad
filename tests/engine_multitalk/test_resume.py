"""A streaming multitalk render resumed from its window_state() at a checkpoint yields exactly what
the uninterrupted render yields from there (the tiny seeded model on the CPU), in process and
through the runner CLI killed after a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE, Image, RenderInputs
from multitalk.runner.engines.multitalk import resume_state
from multitalk.runner.engines.multitalk.engine import MultiTalkEngine
from multitalk.runner.faults import FAULT_ENV
from multitalk.runner.request import RenderRequest
from multitalk.runner.resume import SCRATCH_DIR

from . import tiny, tiny_cache
from .test_engine import CPU_ENV, decoded_frames, portrait, render, write_wav

SECONDS = 6.0  # 150 frames at 25 fps: windows of 81, then 56 and 56 new (the last cut at 150)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cache.build(tmp_path_factory.mktemp("models"))


class Source:
    """A source video of a few seeded frames on the output grid (a dub); its last frame past its end."""

    def __init__(self, count: int) -> None:
        rng = np.random.default_rng(8)
        self.images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(count)]

    def frame(self, index: int) -> Image:
        return self.images[min(index, len(self.images) - 1)]


def prepared(cache: Path, seconds: float, source: Source | None) -> tuple[MultiTalkEngine, RenderInputs]:
    """The engine loaded and prepared for a one-speaker 64x64 render at 25 fps, as the runner does."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CPU_ENV.items():
            mp.setenv(key, value)
        engine = MultiTalkEngine(cache)
    speech = tiny.speech(seconds).numpy()
    picture = {"sourceVideo": "source.mp4"} if source is not None else {"image": "face.png"}
    request = RenderRequest.model_validate(
        {
            "engine": "multitalk",
            **picture,
            "speakers": [{"audio": "a.wav"}],
            "video": {"width": 64, "height": 64, "fps": 25},
            "sampling": {"steps": 2, "seed": 4, "textGuidance": 1.0},
            "output": {"uri": "out/render.mp4"},
        }
    )
    image = source.frame(0) if source is not None else np.random.default_rng(3).integers(0, 255, (64, 64, 3), np.uint8)
    inputs = RenderInputs(
        request=request,
        image=image,
        speech=(speech,),
        mix=speech,
        width=64,
        height=64,
        fps=25,
        frames=round(seconds * 25),
        duration_seconds=len(speech) / ENGINE_SAMPLE_RATE,
        model_dir=cache,
        source=source,
    )
    engine.load(request)
    engine.prepare(inputs, lambda fraction: None)
    return engine, inputs


def uninterrupted_render(eng: MultiTalkEngine, inputs: RenderInputs) -> tuple[list[Image], dict[int, bytes]]:
    """Every frame, and the state at each checkpoint (as the runner asks for it: after its window's last frame)."""
    frames: list[Image] = []
    states: dict[int, bytes] = {}
    for frame in eng.frames(inputs, lambda fraction: None):
        frames.append(frame)
        if len(frames) % eng.window_frames == 0 or len(frames) == inputs.frames:
            states[len(frames)] = eng.window_state()
    return frames, states


def assert_resumes_bit_exact(
    eng: MultiTalkEngine, inputs: RenderInputs, frames: list[Image], start: int, state: bytes
) -> None:
    resumed = list(eng.frames(inputs, lambda fraction: None, start=start, state=state))
    assert len(resumed) == inputs.frames - start
    differing = [
        start + i for i, (a, b) in enumerate(zip(resumed, frames[start:], strict=True)) if not np.array_equal(a, b)
    ]
    assert not differing, f"frames {differing[:10]} differ after resuming at {start}"


@pytest.fixture(scope="module")
def engine(cache: Path) -> Iterator[tuple[MultiTalkEngine, RenderInputs]]:
    eng, inputs = prepared(cache, SECONDS, None)
    yield eng, inputs
    eng.close()


@pytest.fixture(scope="module")
def uninterrupted(engine: tuple[MultiTalkEngine, RenderInputs]) -> tuple[list[Image], dict[int, bytes]]:
    return uninterrupted_render(*engine)


@pytest.mark.slow
def test_resuming_at_each_checkpoint_yields_the_uninterrupted_frames(
    engine: tuple[MultiTalkEngine, RenderInputs], uninterrupted: tuple[list[Image], dict[int, bytes]]
) -> None:
    eng, inputs = engine
    frames, states = uninterrupted
    assert eng.resumable and eng.window_frames == 56  # checkpoints where a window's new frames are drained
    assert len(frames) == inputs.frames == 150 and sorted(states) == [56, 112, 150]
    for start in (56, 112):
        # Only the motion frames are left of the window in flight: the state holds exactly those.
        assert resume_state.decode(states[start], eng._fingerprint, 25, (64, 64)).tail.shape[1] == 25
        assert_resumes_bit_exact(eng, inputs, frames, start, states[start])
    assert list(eng.frames(inputs, lambda fraction: None, start=150, state=states[150])) == []


@pytest.mark.slow
def test_a_broken_or_foreign_state_is_refused(
    engine: tuple[MultiTalkEngine, RenderInputs], uninterrupted: tuple[list[Image], dict[int, bytes]]
) -> None:
    eng, inputs = engine
    good = uninterrupted[1][56]
    assert eng.check_state(good, 56) is None
    header_end = good.index(b"}") + 1
    broken = {
        "not a state": b"\x00" * 100,
        "truncated": good[: len(good) // 2],
        "longer": good + b"\x00",
        "another render": good.replace(eng._fingerprint.encode(), b"0" * 64),
        "other version": good.replace(b'"version":1', b'"version":9'),
        "garbled header": good[:header_end].replace(b'"tail_first"', b'"tail_firsT"') + good[header_end:],
    }
    for name, state in broken.items():
        reason = eng.check_state(state, 56)
        assert reason, name
        with pytest.raises(resume_state.StateError):
            next(iter(eng.frames(inputs, lambda fraction: None, start=56, state=state)))
    assert "not 112" in (eng.check_state(good, 112) or "")  # a state continues after its own frame only


@pytest.mark.slow
def test_a_dub_resumes_at_each_checkpoint(cache: Path) -> None:
    """InfiniteTalk's windows (81, then 72 new; 9 motion frames), each conditioned on its source frame."""
    eng, inputs = prepared(cache, 7.0, Source(120))  # 175 frames: 3 windows
    try:
        frames, states = uninterrupted_render(eng, inputs)
        assert eng.window_frames == 72 and sorted(states) == [72, 144, 175]
        for start in (72, 144):
            assert resume_state.decode(states[start], eng._fingerprint, 9, (64, 64)).tail.shape[1] == 9
            assert_resumes_bit_exact(eng, inputs, frames, start, states[start])
    finally:
        eng.close()


def test_window_frames_follow_the_windows_at_any_rate() -> None:
    """A checkpoint's first frame to yield is at or past the next window's motion frames."""
    from multitalk.runner.engines.multitalk.engine import resample_indices

    for fps in (1, 10, 24, 25, 30, 50, 60):
        window = math.ceil(56 * fps / 25)
        wanted = resample_indices(60 * fps, fps, 60 * 25)
        for j, boundary in enumerate(range(window, 60 * fps, window)):
            assert wanted[boundary] >= 56 * (j + 1), (fps, boundary)


@pytest.mark.slow
def test_the_cli_resumes_a_killed_render_bit_exact(tmp_path: Path, cache: Path) -> None:
    """Killed between the second checkpoint's data and its manifest, the rerun resumes after the
    first window and ends with the uninterrupted render's MP4."""

    def request(out: str) -> dict[str, object]:
        return {
            "engine": "multitalk",
            "image": str(portrait(tmp_path / "face.png")),
            "speakers": [{"audio": str(write_wav(tmp_path / "a.wav", SECONDS))}],
            "video": {"width": 64, "height": 64, "fps": 25},
            "sampling": {"steps": 2, "seed": 4, "textGuidance": 1.0},
            "output": {"uri": str(tmp_path / out)},
        }

    (tmp_path / "whole").mkdir()
    proc, _ = render(tmp_path / "whole", cache, request("whole.mp4"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, _ = render(tmp_path, cache, request("resumed.mp4"), **{FAULT_ENV: "checkpoint-data:1"})
    assert proc.returncode == -9, proc.stderr[-3000:]
    scratch = next((tmp_path / SCRATCH_DIR).iterdir())
    assert sorted(p.name for p in scratch.iterdir()) == ["window-00000.bin", "window-00000.json", "window-00001.bin"]
    proc, result = render(tmp_path, cache, request("resumed.mp4"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["resume"]["resumedFromFrame"] == 56 and result["resume"]["windowsTotal"] == 3
    got, want = decoded_frames(tmp_path / "resumed.mp4"), decoded_frames(tmp_path / "whole.mp4")
    assert len(got) == len(want) == 150
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert (tmp_path / "resumed.mp4").read_bytes() == (tmp_path / "whole.mp4").read_bytes()
    assert not (tmp_path / SCRATCH_DIR).exists()


@pytest.mark.slow
def test_a_state_made_with_other_engine_settings_is_not_resumed(tmp_path: Path, cache: Path) -> None:
    """The request (the scratch's key) is the same, the engine's environment is not: the runner
    restores nothing and renders from frame 0, saying why."""
    request = {
        "engine": "multitalk",
        "image": str(portrait(tmp_path / "face.png")),
        "speakers": [{"audio": str(write_wav(tmp_path / "a.wav", 3.6))}],  # 90 frames: windows of 56 and 34
        "video": {"width": 64, "height": 64, "fps": 25},
        "sampling": {"steps": 1, "seed": 4, "textGuidance": 1.0},
        "output": {"uri": str(tmp_path / "out.mp4")},
    }
    proc, _ = render(tmp_path, cache, request, **{FAULT_ENV: "checkpoint-data:1"})
    assert proc.returncode == -9, proc.stderr[-3000:]
    proc, result = render(tmp_path, cache, request, MULTITALK_COLOR_MATCH="0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "engine state is refused: it was made with other engine settings" in proc.stderr
    assert result["resume"]["resumedFromFrame"] == 0
