"""The `helm test` pod's command runs the real runner check, which fails unless the engine is available."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import helm_python as helm
from chart_render import CHART_DIR, VALUE_SETS, test_pod

from multitalk.runner.engines.registry import ENGINES


def _run(args: list[str], model_dir: Path) -> subprocess.CompletedProcess[str]:
    # The pod's command with the runner module in place of the image's entry point.
    return subprocess.run(
        [sys.executable, "-m", "multitalk.runner.cli", *args, "--model-dir", str(model_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_chart_test_engines_are_the_runner_engines() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        assert chart.schema is not None
        assert chart.schema["properties"]["test"]["properties"]["engine"]["enum"] == list(ENGINES)


def test_check_passes_for_an_available_engine(tmp_path: Path) -> None:
    command = test_pod({"test": {"engine": "placeholder"}})["spec"]["containers"][0]["command"]
    assert command[0] == "multitalk-runner"
    result = _run(command[1:], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["engines"]["placeholder"]["available"] is True


def test_check_fails_with_exit_4_when_the_engine_is_unavailable(tmp_path: Path) -> None:
    # An empty model cache: the multitalk engine cannot run, whatever else is installed.
    command = test_pod(VALUE_SETS["full"])["spec"]["containers"][0]["command"]
    assert command[-2:] == ["--require", "multitalk"]
    result = _run(command[1:], tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "engine multitalk is not available" in result.stderr
    assert json.loads(result.stdout)["engines"]["multitalk"]["available"] is False
