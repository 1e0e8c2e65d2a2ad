"""End-to-end renders with local files: the MP4 is decoded again and measured."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from runner_support import Media, probe_mp4, read_wav_mono, run_cli, write_audio


def test_render_example_placeholder(media: Media, tmp_path: Path) -> None:
    run = run_cli(
        [
            "render",
            "--audio",
            str(media.hello),
            "--image",
            str(media.portrait),
            "--out",
            "out/hello.mp4",
            "--engine",
            "placeholder",
            "--width",
            "160",
            "--height",
            "128",
        ],
        tmp_path,
    )
    assert run.code == 0, run.stderr
    video = tmp_path / "out" / "hello.mp4"
    p = probe_mp4(video)
    speech, rate = read_wav_mono(media.hello)
    duration = len(speech) / rate
    assert (p.video_codec, p.audio_codec, p.pix_fmt) == ("h264", "aac", "yuv420p")
    assert (p.width, p.height, p.fps) == (160, 128, 25.0)
    assert p.frames == round(duration * 25)
    assert p.faststart
    assert p.colour == ("bt601", "tv")
    assert p.audio_rate == rate  # the original speech, not the engines' 16 kHz copy
    assert abs(p.video_seconds - duration) <= 1 / 25
    assert abs(p.audio_seconds - duration) <= 1 / 25
    assert abs(p.audio_seconds - p.video_seconds) <= 1 / 25  # A/V agree within one frame
    assert abs(p.audio_decoded_seconds - duration) <= 1 / 25 + 1024 / rate  # all the speech is really there

    assert run.result is not None
    r = run.result
    assert r["ok"] is True and r["exitCode"] == 0
    assert r["engine"] == {**r["engine"], "requested": "placeholder", "name": "placeholder", "device": "cpu"}
    assert r["output"]["frames"] == p.frames
    assert r["output"]["sizeBytes"] == video.stat().st_size
    assert set(r["timings"]) >= {"downloadSeconds", "generateSeconds", "encodeSeconds", "uploadSeconds", "totalSeconds"}
    assert len(json.dumps(r)) <= 4096
    manifest = json.loads((tmp_path / "out" / "hello.json").read_text())
    assert manifest["output"]["sha256"] == r["output"]["sha256"]
    assert manifest["request"]["engine"] == "placeholder"
    assert (tmp_path / "out" / "hello.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in (tmp_path / "out").iterdir() if f.name.startswith(".")]  # no temp files left
    # Not a terminal: progress is JSON lines ending at 100, then the result line.
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    progress = [x for x in lines if x.get("event") == "progress"]
    assert progress[0]["stage"] == "download"
    windows = {"windowsDone": 2, "windowsTotal": 2, "resumedFromFrame": 0}  # 116 frames: checkpoints of 81 + 35
    assert progress[-1] == {"event": "progress", "stage": "done", "percent": 100, **windows}
    assert [x["percent"] for x in progress] == sorted(x["percent"] for x in progress)
    assert lines[-1]["event"] == "result" and lines[-1]["result"]["ok"] is True


@pytest.mark.parametrize(
    ("name", "codec", "rate", "channels"),
    [
        ("speech.mp3", "libmp3lame", 44100, 2),
        ("speech.m4a", "aac", 48000, 1),
        ("speech.ogg", "libopus", 48000, 2),
        ("speech.flac", "flac", 32000, 1),
        ("speech.wav", "pcm_s16le", 11025, 2),
    ],
)
def test_audio_formats_decode_to_16k_mono(
    media: Media, tmp_path: Path, name: str, codec: str, rate: int, channels: int
) -> None:
    from multitalk.runner.audio import decode_speech

    samples, src_rate = read_wav_mono(media.short)
    import av

    res = av.AudioResampler(format="flt", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = src_rate
    resampled = [f.to_ndarray().reshape(-1) for f in [*res.resample(frame), *res.resample(None)]]
    import numpy as np

    path = write_audio(tmp_path / name, np.concatenate(resampled), rate, codec, channels)
    speech = decode_speech(path.read_bytes(), "speakers[0].audio", max_seconds=10)
    assert speech.engine.dtype == np.float32 and speech.engine.ndim == 1
    assert speech.source_rate == rate and speech.source_channels == channels
    assert abs(speech.seconds - len(samples) / src_rate) < 0.1  # codec padding only
    assert abs(len(speech.mux) / speech.mux_rate - speech.seconds) < 0.01


def test_two_speakers_sequential_and_simultaneous(media: Media, tmp_path: Path) -> None:
    base = ["render", "--audio", str(media.short), "--audio", str(media.short), "--engine", "placeholder"]
    base += ["--width", "64", "--height", "64", "--fps", "10"]
    seq = run_cli([*base, "--out", "seq.mp4", "--audio-mode", "sequential"], tmp_path)
    assert seq.code == 0, seq.stderr
    sim = run_cli([*base, "--out", "sim.mp4", "--audio-mode", "simultaneous"], tmp_path)
    assert sim.code == 0, sim.stderr
    one = 1.2
    assert seq.result and abs(seq.result["audio"]["durationSeconds"] - 2 * one) < 0.02
    assert sim.result and abs(sim.result["audio"]["durationSeconds"] - one) < 0.02
    assert probe_mp4(tmp_path / "seq.mp4").frames == round(2 * one * 10)
    assert probe_mp4(tmp_path / "sim.mp4").frames == round(one * 10)


@pytest.mark.parametrize("seconds", [0.5, 2.0])
def test_duration_trims_or_pads(media: Media, tmp_path: Path, seconds: float) -> None:
    args = ["render", "--audio", str(media.short), "--out", "v.mp4", "--engine", "placeholder"]
    run = run_cli([*args, "--width", "64", "--height", "64", "--duration", str(seconds)], tmp_path)
    assert run.code == 0, run.stderr
    p = probe_mp4(tmp_path / "v.mp4")
    assert p.frames == round(seconds * 25)
    assert abs(p.audio_seconds - seconds) <= 1 / 25


def test_request_file_data_uri_and_result_env(media: Media, tmp_path: Path) -> None:
    """The JSON request (as the operator writes it) with a data: input; result path from the env."""
    audio = "data:audio/wav;base64," + base64.b64encode(media.short.read_bytes()).decode()
    request = {
        "engine": "placeholder",
        "image": f"file://{media.portrait}",
        "speakers": [{"audio": audio}],
        "video": {"width": 96, "height": 64, "fps": 12},
        "output": {"uri": f"file://{tmp_path}/out/req.mp4"},
    }
    result_path = tmp_path / "termination-log"
    env = {"MULTITALK_REQUEST": json.dumps(request), "MULTITALK_RESULT_PATH": str(result_path)}
    run = run_cli(["render", "--result", str(result_path)], tmp_path, env=env)
    assert run.code == 0, run.stderr
    result = json.loads(result_path.read_text())
    assert result["engine"] == {**result["engine"], "requested": "placeholder", "name": "placeholder"}
    p = probe_mp4(tmp_path / "out" / "req.mp4")
    assert (p.width, p.height, p.fps) == (96, 64, 12.0)


def test_explicit_engine_unavailable_and_fallback(media: Media, tmp_path: Path) -> None:
    args = ["render", "--audio", str(media.short), "--out", "e.mp4", "--engine", "multitalk"]
    args += ["--width", "64", "--height", "64"]
    refused = run_cli(args, tmp_path)
    assert refused.code == 4, refused.stderr
    assert refused.error["field"] == "engine" and "multitalk unavailable" in refused.error["message"]
    assert not (tmp_path / "e.mp4").exists()
    fallback = run_cli([*args, "--allow-fallback"], tmp_path)
    assert fallback.code == 0, fallback.stderr
    assert fallback.result is not None
    engine = fallback.result["engine"]
    assert engine["requested"] == "multitalk" and engine["name"] != "multitalk"
    assert engine["fallbackReason"].startswith("multitalk unavailable")


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    from PIL import Image

    from multitalk.runner.image import load_portrait

    # A landscape picture stored sideways: left half red, right half blue, with
    # orientation 6 (rotate 90 clockwise to view) -> upright it is top red, bottom blue.
    stored = Image.new("RGB", (200, 100), (255, 0, 0))
    stored.paste((0, 0, 255), (100, 0, 200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    img = load_portrait(path.read_bytes(), "image", 64, 64)
    assert img.shape == (64, 64, 3)
    top, bottom = img[5, 32], img[58, 32]
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_check_reports_engines(tmp_path: Path) -> None:
    run = run_cli(["check"], tmp_path)
    assert run.code == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["engines"]["placeholder"]["available"] is True
    assert report["auto"] in ("multitalk", "lite", "placeholder")
    for name in ("multitalk", "lite"):
        engine = report["engines"][name]
        assert engine["available"] or engine["reason"]  # never unavailable without a reason
    assert report["models"]["exists"] is False
    assert report["versions"]["av"]
    assert "cuda" in report["gpu"]


def test_terminal_gets_a_progress_bar(media: Media, tmp_path: Path) -> None:
    """On a TTY: a tqdm bar and a one-line summary instead of JSON lines."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    from runner_support import RUNNER, clean_env

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a real terminal has a size
    args = ["render", "--audio", str(media.short), "--out", "tty.mp4", "--engine", "placeholder"]
    proc = subprocess.Popen(
        [*RUNNER, *args, "--width", "64", "--height", "64"], stdout=slave, stderr=slave, cwd=tmp_path, env=clean_env()
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "100%|" in text and '"event"' not in text
    assert "wrote tty.mp4: 30 frames" in text


def test_sigterm_mid_render_leaves_a_result_and_no_video(media: Media, tmp_path: Path) -> None:
    """A deadline or eviction mid-render: exit 1 (retryable), a result, nothing at the output."""
    import signal
    import subprocess

    import numpy as np
    from runner_support import RUNNER, clean_env

    speech, rate = read_wav_mono(media.hello)
    long = write_audio(tmp_path / "long.wav", np.tile(speech, 8), rate)  # ~37 s
    result = tmp_path / "result.json"
    args = ["render", "--audio", str(long), "--out", "out/v.mp4", "--engine", "placeholder", "--result", str(result)]
    proc = subprocess.Popen(
        [*RUNNER, *args, "--width", "320", "--height", "240"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=clean_env({"PYTHONFAULTHANDLER": "1"}),  # a hang below dumps every thread's stack
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until frames are being encoded
        event = json.loads(line)
        if event.get("stage") == "generate" and event["percent"] > 20:
            break
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints the stacks to stderr
        _, stderr = proc.communicate(timeout=30)
        pytest.fail(f"the runner did not stop within 120 s of SIGTERM; its threads:\n{stderr[-6000:]}")
    assert proc.returncode == 1
    data = json.loads(result.read_text())
    assert data["ok"] is False and "SIGTERM" in data["error"]["message"]
    assert list((tmp_path / "out").iterdir()) == []  # no video, no poster, no temp file
