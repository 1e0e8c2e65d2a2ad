"""The multitalk engine through the real runner CLI, on the CPU, with a tiny model cache in the published layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from multitalk.runner.engines.multitalk.engine import (
    MultiTalkEngine,
    generation_size,
    memory_plan,
    resample_indices,
    window_plan,
)
from multitalk.runner.engines.multitalk.parallel_plan import Rendezvous
from multitalk.runner.engines.registry import create_engine

from . import tiny, tiny_cache

CPU_ENV = {"MULTITALK_DEVICE": "cpu", "MULTITALK_CHECK_GEOMETRY": "0", "MULTITALK_AREA": str(64 * 64)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cache.build(tmp_path_factory.mktemp("models"))


def write_wav(path: Path, seconds: float) -> Path:
    samples = (tiny.speech(seconds).numpy() * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())
    return path


def render(
    tmp_path: Path, cache: Path, request: dict[str, object], **env_extra: str
) -> tuple[subprocess.CompletedProcess[str], dict]:
    req_path, result_path = tmp_path / "request.json", tmp_path / "result.json"
    req_path.write_text(json.dumps(request))
    env = {**os.environ, **CPU_ENV, "MULTITALK_MODEL_DIR": str(cache), **env_extra}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "multitalk.runner.cli",
            "render",
            "--request",
            str(req_path),
            "--result",
            str(result_path),
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return proc, result


def portrait(path: Path) -> Path:
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
    return path


def two_speaker_request(tmp_path: Path, name: str, **sampling: object) -> dict[str, object]:
    return {
        "engine": "multitalk",
        "image": str(portrait(tmp_path / "face.png")),
        "speakers": [
            {"audio": str(write_wav(tmp_path / "a.wav", 0.5)), "bbox": [8, 4, 40, 30]},
            {"audio": str(write_wav(tmp_path / "b.wav", 0.5)), "bbox": [10, 34, 44, 60]},
        ],
        "audioMode": "sequential",
        "prompt": "two people talk in a bright studio",
        "video": {"width": 96, "height": 64, "fps": 25},
        "sampling": {"steps": 2, "seed": 1, "loras": [{"path": "loras/speed.safetensors", "scale": 1.2}], **sampling},
        "output": {"uri": str(tmp_path / name)},
    }


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)]


@pytest.fixture(scope="module")
def one_rank_frames(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> list[np.ndarray]:
    """Two speakers with bboxes and a LoRA, clip mode, on one rank (the single-process engine)."""
    tmp_path = tmp_path_factory.mktemp("one_rank")
    proc, result = render(tmp_path, cache, two_speaker_request(tmp_path, "out.mp4"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["engine"]["name"] == "multitalk" and result["engine"]["precision"] == "fp32"
    return decoded_frames(tmp_path / "out.mp4")


@pytest.mark.slow
def test_two_speakers_clip_mode(one_rank_frames: list[np.ndarray]) -> None:
    assert len(one_rank_frames) == 25  # 1 s of speech at 25 fps
    assert one_rank_frames[0].shape == (64, 96, 3)


@pytest.mark.slow
def test_two_ranks_render_what_one_renders(tmp_path: Path, cache: Path, one_rank_frames: list[np.ndarray]) -> None:
    """WORLD_SIZE=2: the runner spawns rank 1 (its own transformer copy, the LoRA merged), splits the sequence
    (3 evaluations per step), and rank 0 alone writes the video; the frames equal the single-rank ones."""
    from .ranks import free_port

    proc, result = render(
        tmp_path, cache, two_speaker_request(tmp_path, "two.mp4"), WORLD_SIZE="2", MASTER_PORT=str(free_port())
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["ok"] and result["engine"]["name"] == "multitalk" and result["engine"]["device"] == "2 x cpu"
    frames = decoded_frames(tmp_path / "two.mp4")
    assert len(frames) == len(one_rank_frames)
    worst = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(frames, one_rank_frames, strict=True))
    assert worst <= 1, worst  # fp32 differences of ~1e-6 may flip a rounding, never more
    inputs = {"face.png", "a.wav", "b.wav", "request.json", "result.json"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in inputs) == ["two.json", "two.mp4", "two.png"]


@pytest.mark.slow
def test_int8_precision_renders(tmp_path: Path, cache: Path) -> None:
    """sampling.precision int8: blocks quantised while loading (torchao), reported on the result."""
    request = two_speaker_request(tmp_path, "int8.mp4", precision="int8", steps=1)
    proc, result = render(tmp_path, cache, request)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["engine"]["precision"] == "int8"
    assert len(decoded_frames(tmp_path / "int8.mp4")) == 25


@pytest.mark.slow
def test_one_speaker_streaming_and_fps(tmp_path: Path, cache: Path) -> None:
    request = {
        "engine": "multitalk",
        "image": str(portrait(tmp_path / "face.png")),
        "speakers": [{"audio": str(write_wav(tmp_path / "a.wav", 3.6))}],
        "video": {"width": 64, "height": 64, "fps": 10},
        "sampling": {"steps": 2, "seed": 2, "textGuidance": 1.0, "teaCache": 0.3},
        "output": {"uri": str(tmp_path / "long.mp4")},
    }
    # Sequential offload's code path (blocks visiting the execution device one by one) also runs here.
    proc, _result = render(tmp_path, cache, request, MULTITALK_OFFLOAD="sequential")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with av.open(str(tmp_path / "long.mp4")) as container:
        count = sum(1 for _ in container.decode(video=0))
    assert count == 36  # 3.6 s at 10 fps, from 90 frames at 25 fps generated in two windows


def test_unavailable_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTITALK_DEVICE", raising=False)
    engine, availability = create_engine("multitalk", tmp_path)
    assert isinstance(engine, MultiTalkEngine)
    assert not availability.available
    # No GPU here, and no models: the reason names what is missing.
    assert "no CUDA device" in availability.reason and "model files missing" in availability.reason


def test_check_lists_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTITALK_DEVICE", "cpu")
    _, availability = create_engine("multitalk", tmp_path)
    assert not availability.available
    assert "multitalk.safetensors" in availability.reason and "chinese-wav2vec2-base" in availability.reason


def test_planning_helpers() -> None:
    assert window_plan(25) == (25, False)
    assert window_plan(26) == (29, False)
    assert window_plan(3) == (5, False)
    assert window_plan(81) == (81, False)
    assert window_plan(82) == (81, True)
    assert generation_size(480, 480, 640 * 640) == (640, 640)
    h, w = generation_size(832, 480, 640 * 640)
    assert h % 16 == 0 and w % 16 == 0 and abs(h / w - 480 / 832) < 0.05
    assert resample_indices(4, 10, 10) == [0, 3, 5, 8]
    assert resample_indices(3, 25, 3) == [0, 1, 2]


def test_without_torch_the_engine_says_not_installed(tmp_path: Path) -> None:
    """A runner image without the multitalk extra: importing the engine works and availability explains."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from pathlib import Path\n"
        "from multitalk.runner.engines.registry import create_engine\n"
        f"engine, avail = create_engine('multitalk', Path({str(tmp_path)!r}))\n"
        "print(engine is not None, avail.available, avail.reason)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "True False not installed: torch (install the multitalk extra)"


@pytest.mark.slow
def test_bbox_outside_the_frame_is_refused(tmp_path: Path, cache: Path) -> None:
    request = {
        "engine": "multitalk",
        "image": str(portrait(tmp_path / "face.png")),
        "speakers": [
            {"audio": str(write_wav(tmp_path / "a.wav", 0.3)), "bbox": [8, 4, 40, 30]},
            {"audio": str(write_wav(tmp_path / "b.wav", 0.3)), "bbox": [300, 300, 400, 400]},
        ],
        "video": {"width": 96, "height": 64},
        "sampling": {"steps": 1},
        "output": {"uri": str(tmp_path / "bad.mp4")},
    }
    proc, result = render(tmp_path, cache, request)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "speakers[1].bbox" in proc.stderr and "rows first" in proc.stderr
    assert not (tmp_path / "bad.mp4").exists()
    assert result["exitCode"] == 3 and result["error"]["field"] == "speakers[1].bbox"


def test_validate_names_the_field(tmp_path: Path) -> None:
    from multitalk.runner.errors import InvalidInput
    from multitalk.runner.request import RenderRequest

    engine = MultiTalkEngine(tmp_path)
    base = {"image": "face.png", "output": {"uri": "out.mp4"}}
    with pytest.raises(InvalidInput) as err:
        engine.validate(RenderRequest.model_validate({**base, "image": None, "speakers": [{"audio": "a.wav"}]}))
    assert err.value.field == "image"
    with pytest.raises(InvalidInput) as err:
        engine.validate(
            RenderRequest.model_validate(
                {**base, "speakers": [{"audio": "a.wav"}], "sampling": {"loras": [{"path": "loras/x.safetensors"}]}}
            )
        )
    assert err.value.field == "sampling.loras[0].path"
    with pytest.raises(InvalidInput) as err:
        engine.validate(
            RenderRequest.model_validate(
                {**base, "speakers": [{"audio": "a.wav", "bbox": [0, 0, 10, 10]}, {"audio": "b.wav"}]}
            )
        )
    assert err.value.field == "speakers[].bbox"


GIB = 2**30


def test_memory_plan() -> None:
    bf16 = 38 * GIB  # the 14B transformer + audio adapter
    # 80 GB GPU: bf16 replicated; 48 GB: fp8 where supported, else int8; 4 x 48 GB: bf16 sharded.
    assert memory_plan("auto", bf16, 80 * GIB, True, "none", 1) == ("bf16", False)
    assert memory_plan("auto", bf16, 48 * GIB, True, "none", 1) == ("fp8", False)
    assert memory_plan("auto", bf16, 48 * GIB, False, "none", 1) == ("int8", False)
    assert memory_plan("auto", bf16, 48 * GIB, True, "none", 4) == ("bf16", True)
    assert memory_plan("bf16", bf16, 48 * GIB, True, "none", 2) == ("bf16", True)
    assert memory_plan("bf16", bf16, 80 * GIB, True, "none", 8) == ("bf16", False)
    assert memory_plan("int8", bf16, 48 * GIB, True, "none", 4) == ("int8", False)
    # No GPU figure (CPU) or an offload mode: never sharded, auto is bf16.
    assert memory_plan("auto", bf16, None, True, "none", 2) == ("bf16", False)
    assert memory_plan("auto", bf16, 24 * GIB, True, "sequential", 1) == ("bf16", False)


def test_rank_environment() -> None:
    assert Rendezvous.from_env({}, "cuda") == Rendezvous(1)
    env = {"WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29501"}
    assert Rendezvous.from_env(env, "cuda") == Rendezvous(4, "127.0.0.1", 29501, "cuda")
    assert Rendezvous.from_env(env, "cpu").backend == "gloo"
    for bad, message in (
        ({"WORLD_SIZE": "9"}, r"WORLD_SIZE=9 is out of range; use 1\.\.8"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"MASTER_PORT": "0"}, "MASTER_PORT=0 is out of range"),
        ({"WORLD_SIZE": "2", "RANK": "1"}, "not under torchrun"),
    ):
        with pytest.raises(ValueError, match=message):
            Rendezvous.from_env(bad, "cuda")


def test_bad_rank_environment_makes_the_engine_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTITALK_DEVICE", "cpu")
    monkeypatch.setenv("WORLD_SIZE", "12")
    _, availability = create_engine("multitalk", tmp_path)
    assert not availability.available and "WORLD_SIZE=12" in availability.reason


def test_check_lists_the_precisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTITALK_DEVICE", "cpu")
    _, availability = create_engine("multitalk", tmp_path)
    precisions = availability.details["precisions"]
    assert isinstance(precisions, dict) and set(precisions) == {"bf16", "fp8", "int8"}
    assert availability.details["ranks"] == 1
