"""An S3 outage while a checkpoint is being written (issue 13): a real one, on the wire.

The runner reaches moto's S3 server through a TCP proxy (tests/cluster/tcpproxy.py) that is
cut half-way through the body of one checkpoint PUT, so the server gets a torn upload and
the runner a reset, then refused connections. What must hold:
- no torn or half-recorded checkpoint is used: a retry resumes after the last window whose
  data and manifest both made it, and its MP4 is the uninterrupted render's, byte for byte;
- an outage that lasts past the render fails the publish: exit 1 (retryable) with a result;
- an outage that ends costs the windows it hit, not the render.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster.tcpproxy import TcpProxy
from runner_support import RUNNER, Media, S3Server, clean_env
from test_resume import WINDOW, args, assert_same_video, render

from multitalk.runner.errors import ExitCode, FailureReason
from multitalk.runner.faults import FAULT_ENV, FaultPoint
from multitalk.runner.resume import SCRATCH_DIR, data_name, manifest_name

pytestmark = pytest.mark.slow
KILLED = -signal.SIGKILL
STALL_BOUND_SECONDS = 90  # the scratch client's timeouts and attempts (runner/resume.py), plus the render


@pytest.fixture(scope="module")
def reference(media: Media, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted render (local: the frames do not depend on where they go)."""
    tmp = tmp_path_factory.mktemp("reference")
    code, _, stderr = render(args(media, "out/v.mp4"), tmp)
    assert code == 0, stderr
    return tmp / "out" / "v.mp4"


@pytest.fixture
def proxy(s3: S3Server) -> Iterator[TcpProxy]:
    upstream = urllib.parse.urlparse(s3.endpoint)
    assert upstream.hostname and upstream.port
    p = TcpProxy(upstream.hostname, upstream.port)
    yield p
    p.close()


def through(media: Media, s3: S3Server, proxy: TcpProxy, key: str) -> list[str]:
    return [*args(media, f"s3://{s3.bucket}/{key}"), "--endpoint", proxy.endpoint, "--region", "us-east-1"]


def scratch_names(s3: S3Server, folder: str) -> set[str]:
    """The checkpoint files under the folder's scratch (read directly, not through the proxy)."""
    return {k.rsplit("/", 1)[1] for k in s3.keys(f"{folder}/{SCRATCH_DIR}/")}


def run_restoring_when(
    cmd: list[str], tmp: Path, proxy: TcpProxy, warning: str, env: dict[str, str]
) -> tuple[int, dict[str, Any] | None, str]:
    """Run a render and bring the link back once its stderr shows the warning."""
    result = tmp / "result.json"
    result.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [*RUNNER, *cmd, "--result", str(result)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(env),
        cwd=tmp,
    )
    lines: list[str] = []

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if warning in line:
                proxy.restore()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code = proc.wait(timeout=300)
    watcher.join(timeout=30)
    return code, json.loads(result.read_text()) if result.exists() else None, "".join(lines)


def fetched(s3: S3Server, key: str, tmp: Path) -> Path:
    got = tmp / "got.mp4"
    s3.client().download_file(s3.bucket, key, str(got))
    return got


@pytest.mark.parametrize("torn", [data_name(1), manifest_name(1)], ids=["data", "manifest"])
def test_an_outage_during_a_checkpoint_write_that_outlasts_the_render(
    media: Media, tmp_path: Path, s3: S3Server, proxy: TcpProxy, reference: Path, torn: str
) -> None:
    folder = f"outage-{torn.rsplit('.', 1)[1]}"
    cmd = through(media, s3, proxy, f"{folder}/v.mp4")
    fired = proxy.cut_mid_request(torn)

    code, result, stderr = render(cmd, tmp_path, s3.writer)
    assert fired.is_set(), "the cut never happened"
    assert code == ExitCode.RETRYABLE, stderr
    assert result is not None and not result["ok"] and result["exitCode"] == ExitCode.RETRYABLE
    assert result["error"]["reason"] == FailureReason.RUNNER_ERROR and result["error"]["field"] == "output.uri"
    assert "window 1 was not checkpointed" in stderr
    assert f"{folder}/v.mp4" not in s3.keys(folder)
    # Window 0 is whole; window 1 has no manifest (a torn PUT is not stored, and the
    # manifest is only written after its data); nothing later got through.
    names = scratch_names(s3, folder)
    assert {data_name(0), manifest_name(0)} <= names
    assert manifest_name(1) not in names and not any(n.startswith(("window-00002", "window-00003")) for n in names)

    proxy.restore()
    code, result, stderr = render(cmd, tmp_path, s3.writer)
    assert code == 0, stderr
    assert result is not None and result["resume"]["resumedFromFrame"] == WINDOW
    assert result["resume"]["windowsDone"] == 4
    assert_same_video(fetched(s3, f"{folder}/v.mp4", tmp_path), reference)
    assert scratch_names(s3, folder) == set()  # published: scratch removed


def test_an_outage_that_ends_costs_the_windows_it_hit(
    media: Media, tmp_path: Path, s3: S3Server, proxy: TcpProxy, reference: Path
) -> None:
    """The link is back once the runner has given window 1 up; windows 2 and 3 are written,
    and the runner is killed in the final assembly. Windows 2 and 3 are complete and valid,
    but they do not follow a recorded window 1, so the retry resumes after window 0."""
    folder = "outage-ends"
    cmd = through(media, s3, proxy, f"{folder}/v.mp4")
    fired = proxy.cut_mid_request(data_name(1))
    env = {**s3.writer, FAULT_ENV: FaultPoint.ASSEMBLY}
    code, _, stderr = run_restoring_when(cmd, tmp_path, proxy, "window 1 was not checkpointed", env)
    assert code == KILLED, stderr
    assert fired.is_set()
    assert "window 1 was not checkpointed" in stderr and "window 2 was not checkpointed" not in stderr
    names = scratch_names(s3, folder)
    assert {manifest_name(w) for w in (0, 2, 3)} <= names and manifest_name(1) not in names

    code, result, stderr = render(cmd, tmp_path, s3.writer)
    assert code == 0, stderr
    assert result is not None and result["resume"]["resumedFromFrame"] == WINDOW
    assert_same_video(fetched(s3, f"{folder}/v.mp4", tmp_path), reference)
    assert scratch_names(s3, folder) == set()


def test_an_outage_while_restoring_resumes_from_what_was_read(
    media: Media, tmp_path: Path, s3: S3Server, proxy: TcpProxy, reference: Path
) -> None:
    """Killed with three windows recorded; the retry loses the link as it asks for window 1's
    data, so it restores window 0 only and renders the rest (the link is back by then)."""
    folder = "outage-restore"
    cmd = through(media, s3, proxy, f"{folder}/v.mp4")
    code, _, stderr = render(cmd, tmp_path, {**s3.writer, FAULT_ENV: f"{FaultPoint.CHECKPOINT_DATA}:3"})
    assert code == KILLED, stderr
    assert {manifest_name(w) for w in range(3)} <= scratch_names(s3, folder)

    fired = proxy.cut_mid_request(data_name(1))  # a GET: cut before it reaches the server
    code, result, stderr = run_restoring_when(cmd, tmp_path, proxy, "resuming stops before window 1", s3.writer)
    assert fired.is_set()
    assert code == 0, stderr
    assert result is not None and result["resume"]["resumedFromFrame"] == WINDOW
    assert_same_video(fetched(s3, f"{folder}/v.mp4", tmp_path), reference)
    assert scratch_names(s3, folder) == set()


def test_a_stalled_storage_holds_the_render_up_for_a_bounded_time(
    media: Media, tmp_path: Path, s3: S3Server, proxy: TcpProxy, reference: Path
) -> None:
    """A brownout: window 1's data PUT gets no answer and neither does anything after it (no
    reset, no refusal). Checkpoints are best-effort, so the runner gives the window up after
    its scratch client's short timeouts instead of botocore's default patience, and the link
    is back for the rest."""
    folder = "outage-stall"
    cmd = through(media, s3, proxy, f"{folder}/v.mp4")
    fired = proxy.stall_at_request(data_name(1))
    started = time.monotonic()
    code, result, stderr = run_restoring_when(cmd, tmp_path, proxy, "window 1 was not checkpointed", s3.writer)
    took = time.monotonic() - started
    assert fired.is_set()
    assert code == 0, stderr
    assert "window 1 was not checkpointed" in stderr
    print(f"render with a stalled checkpoint write: {took:.1f} s")
    assert took < STALL_BOUND_SECONDS, f"the stall held the render up for {took:.0f} s"
    assert result is not None and result["resume"]["resumedFromFrame"] == 0
    assert_same_video(fetched(s3, f"{folder}/v.mp4", tmp_path), reference)
    assert scratch_names(s3, folder) == set()
