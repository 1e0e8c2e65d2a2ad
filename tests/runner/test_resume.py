"""A render SIGKILLed part-way resumes after its last verified checkpoint, and the MP4 it ends
with has the frames and sound of an uninterrupted render (local files and moto's S3).

The kills: from outside while a window renders (once the first checkpoint is in), and from
inside at MULTITALK_FAULT's points (runner/faults.py), which an outside kill cannot hit
reliably: between a checkpoint's data and its manifest, and inside the final assembly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from runner_support import RUNNER, Media, S3Server, clean_env

from multitalk.runner.faults import FAULT_ENV
from multitalk.runner.resume import SCRATCH_DIR

WINDOW = 81  # engines' checkpoint window (runner/engines/base.py)
SECONDS = 10.0  # 250 frames at 25 fps: windows of 81, 81, 81 and 7
FRAMES = 250


def decoded(path: Path) -> tuple[list[bytes], np.ndarray]:
    """Every decoded video frame (its yuv420p planes) and every decoded audio sample."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray().tobytes() for f in c.decode(c.streams.video[0])]
        c.seek(0)
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(c.streams.audio[0])])
    return frames, audio


def assert_same_video(got: Path, want: Path) -> None:
    got_frames, got_audio = decoded(got)
    want_frames, want_audio = decoded(want)
    assert len(got_frames) == len(want_frames) == FRAMES
    differing = [i for i, (a, b) in enumerate(zip(got_frames, want_frames, strict=True)) if a != b]
    assert not differing, f"frames {differing[:10]} differ from the uninterrupted render's"
    assert np.array_equal(got_audio, want_audio)
    # Stronger still: the encoder saw the same input, so it wrote the same file.
    assert got.read_bytes() == want.read_bytes()


# Per engine, a small frame; "large": the placeholder slowed to about a second a window, so
# that a kill aimed from outside lands inside a window.
SIZES = {"placeholder": (160, 128), "large": (640, 480), "lite": (256, 256)}


def args(media: Media, out: str, kind: str = "placeholder", extra: tuple[str, ...] = ()) -> list[str]:
    engine = "placeholder" if kind == "large" else kind
    common = ["render", "--audio", str(media.hello), "--out", out, "--engine", engine, "--duration", str(SECONDS)]
    width, height = SIZES[kind]
    image = ["--image", str(media.portrait)] if engine == "lite" else []
    return [*common, "--width", str(width), "--height", str(height), *image, *extra, "--no-progress"]


def render(cmd: list[str], tmp: Path, env: dict[str, str] | None = None) -> tuple[int, dict | None, str]:
    result = tmp / "result.json"
    result.unlink(missing_ok=True)
    proc = subprocess.run(
        [*RUNNER, *cmd, "--result", str(result)],
        capture_output=True,
        text=True,
        env=clean_env(env),
        cwd=tmp,
        timeout=300,
    )
    return proc.returncode, json.loads(result.read_text()) if result.exists() else None, proc.stderr


def kill_when(cmd: list[str], tmp: Path, ready: Callable[[], bool], env: dict[str, str] | None = None) -> None:
    """Start a render and SIGKILL it once `ready()` holds."""
    proc = subprocess.Popen(
        [*RUNNER, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env(env), cwd=tmp
    )
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert proc.poll() is None, f"the render ended before the kill: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def scratch_dirs(out_dir: Path) -> list[Path]:
    root = out_dir / SCRATCH_DIR
    return sorted(root.iterdir()) if root.exists() else []


@pytest.fixture(scope="module")
def reference(media: Media, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uninterrupted renders, one per kind of args()."""
    tmp = tmp_path_factory.mktemp("reference")
    out = {}
    for kind in SIZES:
        code, _, stderr = render(args(media, f"out/{kind}.mp4", kind), tmp)
        assert code == 0, stderr
        out[kind] = tmp / "out" / f"{kind}.mp4"
    assert not scratch_dirs(tmp / "out")  # a published render leaves no scratch
    return out


def test_kill_during_a_window_resumes_after_the_last_checkpoint(
    media: Media, tmp_path: Path, reference: dict[str, Path]
) -> None:
    cmd = args(media, "out/v.mp4", "large")
    out = tmp_path / "out"
    kill_when(cmd, tmp_path, lambda: any((d / "window-00000.json").exists() for d in scratch_dirs(out)))
    assert not (out / "v.mp4").exists()
    (scratch,) = scratch_dirs(out)
    done = len(list(scratch.glob("window-*.json")))
    assert 1 <= done < 4

    code, result, stderr = render(cmd, tmp_path)
    assert code == 0, stderr
    assert result is not None
    assert result["resume"] == {
        "windowsDone": 4,
        "windowsTotal": 4,
        "windowFrames": WINDOW,
        "resumedFromFrame": done * WINDOW,
    }
    assert_same_video(out / "v.mp4", reference["large"])
    assert not scratch_dirs(out) and not (out / SCRATCH_DIR).exists()


def test_kill_between_a_checkpoints_data_and_its_manifest(
    media: Media, tmp_path: Path, reference: dict[str, Path]
) -> None:
    cmd = args(media, "out/v.mp4")
    code, _, _ = render(cmd, tmp_path, {FAULT_ENV: "checkpoint-data:1"})
    assert code == -signal.SIGKILL
    (scratch,) = scratch_dirs(tmp_path / "out")
    assert (scratch / "window-00001.bin").exists() and not (scratch / "window-00001.json").exists()

    code, result, stderr = render(cmd, tmp_path)
    assert code == 0, stderr
    assert result is not None and result["resume"]["resumedFromFrame"] == WINDOW  # window 1 is rendered again
    assert_same_video(tmp_path / "out" / "v.mp4", reference["placeholder"])


def test_kill_during_the_final_assembly_generates_nothing_again(
    media: Media, tmp_path: Path, reference: dict[str, Path]
) -> None:
    cmd = args(media, "out/v.mp4")
    code, _, _ = render(cmd, tmp_path, {FAULT_ENV: "assembly"})
    assert code == -signal.SIGKILL
    assert not (tmp_path / "out" / "v.mp4").exists()

    proc = subprocess.run(
        [*RUNNER, *[a for a in cmd if a != "--no-progress"]],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next(line["result"] for line in lines if line["event"] == "result")
    assert result["resume"]["resumedFromFrame"] == FRAMES
    last = [line for line in lines if line["event"] == "progress"][-1]  # what the operator reads
    assert (last["stage"], last["windowsDone"], last["windowsTotal"], last["resumedFromFrame"]) == (
        "done",
        4,
        4,
        FRAMES,
    )
    assert_same_video(tmp_path / "out" / "v.mp4", reference["placeholder"])


def test_a_checkpoint_with_a_bad_checksum_is_not_used(media: Media, tmp_path: Path, reference: dict[str, Path]) -> None:
    cmd = args(media, "out/v.mp4")
    code, _, _ = render(cmd, tmp_path, {FAULT_ENV: "checkpoint-data:2"})  # windows 0 and 1 are complete
    assert code == -signal.SIGKILL
    (scratch,) = scratch_dirs(tmp_path / "out")
    data = bytearray((scratch / "window-00001.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the frames
    (scratch / "window-00001.bin").write_bytes(bytes(data))

    code, result, stderr = render(cmd, tmp_path)
    assert code == 0, stderr
    assert "window-00001.json is not used: its data does not match the manifest's checksum" in stderr
    assert result is not None and result["resume"]["resumedFromFrame"] == WINDOW  # window 0 only
    assert_same_video(tmp_path / "out" / "v.mp4", reference["placeholder"])


def test_a_different_request_does_not_reuse_the_checkpoints(media: Media, tmp_path: Path) -> None:
    code, _, _ = render(args(media, "out/v.mp4"), tmp_path, {FAULT_ENV: "checkpoint-data:2"})
    assert code == -signal.SIGKILL
    (abandoned,) = scratch_dirs(tmp_path / "out")

    # Same output, same frames even (the placeholder ignores the seed), but another request.
    code, result, stderr = render(args(media, "out/v.mp4", extra=("--seed", "7")), tmp_path)
    assert code == 0, stderr
    assert result is not None and result["resume"]["resumedFromFrame"] == 0
    assert scratch_dirs(tmp_path / "out") == [abandoned]  # left for the lifecycle rule


def test_lite_resumes_bit_exact(media: Media, tmp_path: Path, reference: dict[str, Path]) -> None:
    cmd = args(media, "out/v.mp4", "lite")
    code, _, stderr = render(cmd, tmp_path, {FAULT_ENV: "checkpoint-data:2"})
    assert code == -signal.SIGKILL, stderr

    code, result, stderr = render(cmd, tmp_path)
    assert code == 0, stderr
    assert result is not None and result["engine"]["name"] == "lite"
    assert result["resume"]["resumedFromFrame"] == 2 * WINDOW
    assert_same_video(tmp_path / "out" / "v.mp4", reference["lite"])


def test_s3_kill_during_a_window_and_between_data_and_manifest(
    media: Media, tmp_path: Path, s3: S3Server, reference: dict[str, Path]
) -> None:
    uri = f"s3://{s3.bucket}/resume/v.mp4"
    cmd = [*args(media, uri, "large"), "--endpoint", s3.endpoint, "--region", "us-east-1"]
    env = dict(s3.writer)
    prefix = f"resume/{SCRATCH_DIR}/"

    kill_when(cmd, tmp_path, lambda: any(k.endswith("window-00000.json") for k in s3.keys(prefix)), env)
    first = [k for k in s3.keys(prefix) if k.endswith(".json")]
    assert first and "resume/v.mp4" not in s3.keys("resume/")

    # The retry is killed too, between window 2's data and its manifest.
    code, _, _ = render(cmd, tmp_path, {**env, FAULT_ENV: "checkpoint-data:2"})
    assert code == -signal.SIGKILL
    keys = s3.keys(prefix)
    assert any(k.endswith("window-00002.bin") for k in keys) and not any(k.endswith("window-00002.json") for k in keys)

    code, result, stderr = render(cmd, tmp_path, env)
    assert code == 0, stderr
    assert result is not None and result["resume"]["resumedFromFrame"] == 2 * WINDOW
    got = tmp_path / "got.mp4"
    s3.client().download_file(s3.bucket, "resume/v.mp4", str(got))
    assert_same_video(got, reference["large"])
    assert s3.keys(prefix) == []  # scratch removed after the publish


def test_an_unwritable_scratch_costs_the_checkpoints_not_the_render(media: Media, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / SCRATCH_DIR).write_text("a file where the scratch folder goes")  # no checkpoint can be written
    code, result, stderr = render(args(media, "out/v.mp4"), tmp_path)
    assert code == 0, stderr
    assert "window 0 was not checkpointed" in stderr
    assert (out / "v.mp4").exists() and result is not None and result["ok"]


def test_a_lite_dub_resumes_bit_exact(media: Media, tmp_path: Path, reference: dict[str, Path]) -> None:
    """A dub of lite's own 10 s render: the resumed run re-tracks the faces and decodes the source
    from the window it resumes at, and writes the uninterrupted dub's file."""
    cmd = args(media, "out/dub.mp4", "lite")
    source = str(reference["lite"])
    cmd[cmd.index("--image") : cmd.index("--image") + 2] = ["--source-video", source]
    code, _, stderr = render([*cmd[:-1], "--out", "out/whole.mp4", "--no-progress"], tmp_path)
    assert code == 0, stderr
    code, _, stderr = render(cmd, tmp_path, {FAULT_ENV: "checkpoint-data:2"})
    assert code == -signal.SIGKILL, stderr
    code, result, stderr = render(cmd, tmp_path)
    assert code == 0, stderr
    assert result is not None and result["resume"]["resumedFromFrame"] == 2 * WINDOW
    assert_same_video(tmp_path / "out" / "dub.mp4", tmp_path / "out" / "whole.mp4")
