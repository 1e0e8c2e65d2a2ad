"""Replay of the fuzzers' seeds and findings, on every test run.

Seeds (tests/fuzz/seeds) are real files the runner must accept. Findings
(tests/fuzz/crashes) are inputs a fuzzer once broke the runner with; each must now be
refused as InvalidInput naming the field, in process and through the CLI as in the pod:
exit 3, a result, nothing at the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fuzz_targets
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SPEECH = REPO / "examples" / "media" / "hello.wav"
SEEDS = sorted(p for p in (HERE / "seeds").glob("*/*") if p.is_file())
CRASHES = sorted(p for p in (HERE / "crashes").glob("*/*") if p.is_file())
FIELD = {"image": "image", "audio": "speakers[0].audio", "video": "sourceVideo", "request": "request"}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_every_target_has_seeds_and_findings_are_filed_by_target() -> None:
    assert {p.parent.name for p in SEEDS} == set(fuzz_targets.TARGETS)
    assert {p.parent.name for p in CRASHES} <= set(fuzz_targets.TARGETS)


@pytest.mark.parametrize("path", SEEDS, ids=_id)
def test_seed_is_accepted(path: Path) -> None:
    assert fuzz_targets.TARGETS[path.parent.name](path.read_bytes()) is True


@pytest.mark.parametrize("path", CRASHES, ids=_id)
def test_finding_is_refused_in_process(path: Path) -> None:
    # Anything but InvalidInput escaping (or a refusal naming no field) fails here.
    fuzz_targets.TARGETS[path.parent.name](path.read_bytes())


def _render(tmp: Path, args: list[str], env: dict[str, str]) -> tuple[int, str, dict[str, Any]]:
    """`multitalk-runner render` as in the pod: a child process, no stray AWS or runner settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MULTITALK_"))}
    clean["MULTITALK_MODEL_DIR"] = str(tmp / "no-models")
    result = tmp / "result.json"
    cmd = [sys.executable, "-m", "multitalk.runner.cli", *args, "--result", str(result)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**clean, **env}, cwd=tmp, timeout=120)
    return proc.returncode, proc.stderr, json.loads(result.read_text())


@pytest.mark.parametrize("path", CRASHES, ids=_id)
def test_finding_exits_3_through_the_cli(path: Path, tmp_path: Path) -> None:
    target = path.parent.name
    request: dict[str, object] = {
        "engine": "placeholder",
        "speakers": [{"audio": str(SPEECH)}],
        "video": {"width": 64, "height": 64},
        "output": {"uri": "out/v.mp4"},
    }
    env: dict[str, str] = {}
    if target == "image":
        request["image"] = str(path)
    elif target == "audio":
        request["speakers"] = [{"audio": str(path)}]
    elif target == "video":
        request["sourceVideo"] = str(path)
    else:
        env["MULTITALK_REQUEST"] = path.read_bytes().decode("utf-8")
    args = ["render", "--no-progress"] if target == "request" else ["render", "--request", "request.json"]
    (tmp_path / "request.json").write_text(json.dumps(request))
    code, stderr, result = _render(tmp_path, args, env)
    assert code == 3, (code, stderr[-2000:])
    assert result["error"]["reason"] == "InvalidInput"
    if target in ("image", "audio", "video"):
        assert result["error"]["field"] == FIELD[target], result
    else:
        assert result["error"]["field"], result
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
