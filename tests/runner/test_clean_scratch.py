"""`multitalk-runner clean-scratch`: what the operator's clean-up Job runs when a TalkingVideo
whose render did not finish is deleted (operator/cleanup.py). Against moto's S3 server, the
request in MULTITALK_REQUEST as the Job passes it."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from cluster.tcpproxy import TcpProxy
from runner_support import RUNNER, Media, S3Server, clean_env

from multitalk.runner.errors import ExitCode
from multitalk.runner.faults import FAULT_ENV, FaultPoint
from multitalk.runner.request import REQUEST_ENV, RenderRequest, canonical_hash
from multitalk.runner.resume import SCRATCH_DIR

pytestmark = pytest.mark.slow


def request(media: Media, uri: str, endpoint: str, seed: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "speakers": [{"audio": str(media.hello)}],
        "engine": "placeholder",
        "output": {"uri": uri},
        "video": {"width": 160, "height": 128, "durationSeconds": 10.0},
        "storage": {"endpoint": endpoint, "region": "us-east-1"},
    }
    if seed is not None:
        data["sampling"] = {"seed": seed}
    return data


def run(args: list[str], tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNNER, *args], capture_output=True, text=True, env=clean_env(env), cwd=tmp, timeout=300)


def killed_render(req: dict[str, Any], tmp: Path, s3: S3Server) -> str:
    """Render until window 2's data is written, SIGKILLed there; the scratch prefix left."""
    path = tmp / "request.json"
    path.write_text(json.dumps(req))
    env = {**s3.writer, FAULT_ENV: f"{FaultPoint.CHECKPOINT_DATA}:2"}
    proc = run(["render", "--request", str(path), "--no-progress", "--result", str(tmp / "r.json")], tmp, env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    folder = urllib.parse.urlparse(req["output"]["uri"]).path.lstrip("/").rsplit("/", 1)[0]
    prefix = f"{folder}/{SCRATCH_DIR}/{canonical_hash(RenderRequest.model_validate(req))}/"
    assert len(s3.keys(prefix)) == 5  # windows 0 and 1 whole, window 2's data
    return prefix


def clean(req: dict[str, Any], tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(["clean-scratch"], tmp, {**env, REQUEST_ENV: json.dumps(req)})


def test_clean_scratch_removes_that_requests_checkpoints_only(media: Media, tmp_path: Path, s3: S3Server) -> None:
    uri = f"s3://{s3.bucket}/cleaned/v.mp4"
    mine = request(media, uri, s3.endpoint)
    other = request(media, uri, s3.endpoint, seed=7)  # same output, another request
    prefix = killed_render(mine, tmp_path, s3)
    kept = killed_render(other, tmp_path, s3)

    proc = clean(mine, tmp_path, s3.writer)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"event": "scratch-removed", "scratch": f"s3://{s3.bucket}/{prefix}"}
    assert s3.keys(prefix) == []
    assert len(s3.keys(kept)) == 5, "another request's checkpoints stay"
    again = clean(mine, tmp_path, s3.writer)
    assert again.returncode == 0, again.stderr  # nothing there: done (a retried clean-up pod)


def test_clean_scratch_exit_codes(media: Media, tmp_path: Path, s3: S3Server) -> None:
    upstream = urllib.parse.urlparse(s3.endpoint)
    assert upstream.hostname and upstream.port
    proxy = TcpProxy(upstream.hostname, upstream.port)
    try:
        req = request(media, f"s3://{s3.bucket}/unreachable/v.mp4", proxy.endpoint)
        proxy.cut()
        down = clean(req, tmp_path, s3.writer)
        assert down.returncode == ExitCode.RETRYABLE, down.stderr  # the Job's next pod tries again
        assert "error (RunnerError): output.uri:" in down.stderr
    finally:
        proxy.close()
    nothing = run(["clean-scratch"], tmp_path, s3.writer)
    assert nothing.returncode == ExitCode.USAGE and REQUEST_ENV in nothing.stderr
    bad = clean({"speakers": [], "output": {"uri": "s3://x/y.mp4"}}, tmp_path, s3.writer)
    assert bad.returncode == ExitCode.INVALID_INPUT, bad.stderr
