"""The multitalk engine's MULTITALK_* settings: typed, and a bad value is a permanent error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runner_support import HELLO_WAV, PORTRAIT, run_cli

from multitalk.runner.check import check_report
from multitalk.runner.engines.multitalk.env_settings import EngineMisconfigured, load_settings
from multitalk.runner.errors import EngineUnavailable, ExitCode
from multitalk.runner.pipeline import select_engine
from multitalk.runner.request import RenderRequest


def _request(**fields: object) -> RenderRequest:
    return RenderRequest.model_validate(
        {"speakers": [{"audio": "a.wav"}], "image": "face.jpg", "output": {"uri": "o.mp4"}, **fields}
    )


def test_defaults_and_valid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OFFLOAD", "RESOLUTION", "COLOR_MATCH", "APG", "DEVICE", "AREA", "CHECK_GEOMETRY"):
        monkeypatch.delenv(f"MULTITALK_{name}", raising=False)
    defaults = load_settings()
    assert (defaults.offload, defaults.device, defaults.color_match, defaults.apg) == ("none", "cuda", 1.0, False)
    assert defaults.generation_area == 640 * 640
    monkeypatch.setenv("MULTITALK_RESOLUTION", "720")
    monkeypatch.setenv("MULTITALK_APG", "1")
    monkeypatch.setenv("MULTITALK_CHECK_GEOMETRY", "0")
    monkeypatch.setenv("MULTITALK_COLOR_MATCH", "0.5")
    chosen = load_settings()
    assert chosen.generation_area == 960 * 960 and chosen.apg and not chosen.check_geometry
    assert chosen.color_match == 0.5
    monkeypatch.setenv("MULTITALK_AREA", "4096")
    assert load_settings().generation_area == 4096


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("MULTITALK_COLOR_MATCH", "x", "valid number"),
        ("MULTITALK_COLOR_MATCH", "2", "less than or equal to 1"),
        ("MULTITALK_OFFLOAD", "all", "'none', 'model' or 'sequential'"),
        ("MULTITALK_DEVICE", "tpu", "'cuda' or 'cpu'"),
        ("MULTITALK_RESOLUTION", "1080", "'480' or '720'"),
        ("MULTITALK_AREA", "10", "greater than or equal to 256"),
        ("MULTITALK_APG", "maybe", "valid boolean"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(EngineMisconfigured) as refused:
        load_settings()
    assert refused.value.exit_code == ExitCode.ENGINE_UNAVAILABLE  # permanent: no retries
    assert f"{name}={value!r}" in refused.value.message and words in refused.value.message


def test_check_reports_it_and_auto_picks_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MULTITALK_COLOR_MATCH", "x")
    report = check_report(tmp_path)
    multitalk = report["engines"]["multitalk"]
    assert multitalk["available"] is False and multitalk["misconfigured"] is True
    assert "MULTITALK_COLOR_MATCH='x'" in multitalk["reason"]
    assert report["engines"]["placeholder"]["available"] is True
    assert report["auto"] is None  # an auto render would fail, not quietly use another engine


def test_a_render_that_would_use_it_fails_permanently(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MULTITALK_COLOR_MATCH", "x")
    for request in (_request(), _request(engine="multitalk"), _request(engine="multitalk", allowFallback=True)):
        with pytest.raises(EngineUnavailable, match="MULTITALK_COLOR_MATCH='x'") as refused:
            select_engine(request, tmp_path)
        assert refused.value.field == "engine"
    # An engine that does not read the setting is not affected.
    engine, why = select_engine(_request(engine="placeholder"), tmp_path)
    assert engine.name == "placeholder" and why is None


def test_the_cli_exits_4_with_the_variable_in_its_result(tmp_path: Path) -> None:
    args = ["render", "--audio", str(HELLO_WAV), "--image", str(PORTRAIT), "--out", str(tmp_path / "o.mp4")]
    run = run_cli(args, tmp_path, env={"MULTITALK_COLOR_MATCH": "x"})
    assert run.code == ExitCode.ENGINE_UNAVAILABLE, run.stderr
    assert run.result is not None and run.result["error"]["reason"] == "EngineUnavailable"
    assert "MULTITALK_COLOR_MATCH='x'" in run.result["error"]["message"]
    assert not (tmp_path / "o.mp4").exists()
    checked = run_cli(["check"], tmp_path, env={"MULTITALK_COLOR_MATCH": "x"})
    assert checked.code == 0
    assert json.loads(checked.stdout)["engines"]["multitalk"]["misconfigured"] is True
