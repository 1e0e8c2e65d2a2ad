"""SIGTERM (a deadline, an eviction) exits 1 with a result wherever it lands: while the runner
is still starting, and while it decodes the inputs (a decoder's own errors are exit 3; a
SIGTERM inside a decoder call must stay retryable). Mid-render: test_render_local.py.

Start-up takes about a second here and can take far longer in a pod (cold image layers,
torch). To hit that window every time, the child's start-up is slowed where a slow disk
would slow it: a `sitecustomize` (Python's own start-up hook, on the child's PYTHONPATH)
holds the import of one runner module and writes a marker when it begins waiting. The
runner's code is unchanged; only its start-up is made long enough to aim at.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from runner_support import RUNNER, Media, clean_env, read_wav_mono, write_audio

from multitalk.runner.faults import FAULT_ENV, FaultPoint

SITECUSTOMIZE = """
import importlib.abc, os, sys, time

class _SlowImport(importlib.abc.MetaPathFinder):
    def __init__(self, name, marker, seconds):
        self.name, self.marker, self.seconds = name, marker, seconds

    def find_spec(self, name, path=None, target=None):
        if name == self.name:
            sys.meta_path.remove(self)
            open(self.marker, "w").close()
            time.sleep(self.seconds)
        return None

sys.meta_path.insert(0, _SlowImport(os.environ["SLOW_IMPORT"], os.environ["SLOW_IMPORT_MARKER"], 4.0))
"""


@pytest.mark.parametrize(
    "slow_module",
    [
        "multitalk.runner.result",  # pydantic and the result models: needed to write any result
        "multitalk.runner.pipeline",  # numpy, PyAV, Pillow, boto3 and the engines
    ],
)
def test_sigterm_during_start_up_exits_1_with_a_result(slow_module: str, media: Media, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = tmp_path / "importing"
    result = tmp_path / "result.json"
    env = clean_env(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
            "SLOW_IMPORT": slow_module,
            "SLOW_IMPORT_MARKER": str(marker),
        }
    )
    args = ["render", "--audio", str(media.short), "--out", "out/v.mp4", "--engine", "placeholder"]
    proc = subprocess.Popen(
        [*RUNNER, *args, "--result", str(result), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the runner never reached the slowed import"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, (proc.returncode, stderr)
    data = json.loads(result.read_text())
    assert data["ok"] is False and data["exitCode"] == 1
    assert data["error"]["reason"] == "RunnerError" and "SIGTERM" in data["error"]["message"]
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def sigterm_when(
    args: list[str], tmp_path: Path, ready: Callable[[dict[str, Any]], bool], env: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Run the runner, SIGTERM it at the first progress line for which `ready` holds, and check it
    exits 1 with a SIGTERM result; the output after the signal, and the result."""
    result = tmp_path / "result.json"
    proc = subprocess.Popen(
        [*RUNNER, *args, "--result", str(result)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=clean_env(env),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if ready(json.loads(line)):
            break
    proc.send_signal(signal.SIGTERM)
    rest, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, (proc.returncode, stderr)
    data: dict[str, Any] = json.loads(result.read_text())
    assert data["error"]["reason"] == "RunnerError" and "SIGTERM" in data["error"]["message"], data
    return rest, data


def test_sigterm_while_decoding_the_speech_exits_1_with_a_result(media: Media, tmp_path: Path) -> None:
    speech, rate = read_wav_mono(media.hello)
    long = write_audio(tmp_path / "long.wav", np.tile(speech, 120), rate)  # ~9 min: seconds to decode
    args = ["render", "--audio", str(long), "--out", "out/v.mp4", "--engine", "placeholder", "--max-duration", "600"]
    # The download ends, decoding starts: signal then.
    rest, _ = sigterm_when(args, tmp_path, lambda event: event.get("stage") == "download" and event["percent"] >= 5)
    assert '"stage":"load"' not in rest, "the signal came after decoding: make the speech longer"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_sigterm_while_a_window_is_slowed_exits_1_with_a_result(media: Media, tmp_path: Path) -> None:
    """The cluster tests slow each window (MULTITALK_FAULT=slow-window) so that a disruption
    lands mid-render: the pause must hold the render there, and a SIGTERM must still end it."""
    args = ["render", "--audio", str(media.hello), "--out", "out/v.mp4", "--engine", "placeholder"]
    # The first window is checkpointed: its pause has begun.
    _, data = sigterm_when(
        [*args, "--width", "64", "--height", "64"],
        tmp_path,
        lambda event: event.get("windowsDone", 0) >= 1,
        {FAULT_ENV: f"{FaultPoint.SLOW_WINDOW}:600"},
    )
    assert data["resume"]["windowsDone"] == 1 < data["resume"]["windowsTotal"], data  # held after one window
    assert not (tmp_path / "out" / "v.mp4").exists()
