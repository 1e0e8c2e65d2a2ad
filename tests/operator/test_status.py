"""compute_status on recorded Job/pod states: every reason, and contradictory states."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema_check import prunable, validate

from multitalk.operator import crd
from multitalk.operator.conditions import ApiFailure, Verdict, derive_phase
from multitalk.operator.reasons import CONDITION_TYPES, ApiCall, ConditionStatus, ConditionType
from multitalk.operator.status import compute_status
from multitalk.operator.times import human_duration, parse_time
from multitalk.runner.progress import Reading, Stage, Windows, parse_progress, progress_line

FIXTURES = Path(__file__).parent / "fixtures"
CRD = crd.crd_manifest()
STATES = sorted(p.stem for p in (FIXTURES / "states").glob("*.yaml"))


def load_tv() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURES / "talkingvideo.yaml").read_text())
    return data


def load_state(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURES / "states" / f"{name}.yaml").read_text())
    return data


def run_state(name: str) -> tuple[dict[str, Any], Any]:
    """The recorded state's (state, Reconciliation)."""
    state = load_state(name)
    tv = load_tv()
    if state.get("old_status"):
        tv["status"] = state["old_status"]
    now = parse_time(state["now"])
    assert now is not None
    progress = Reading(Stage(state["progress"][0]), float(state["progress"][1])) if state.get("progress") else None
    rec = compute_status(tv, state["job"], state["pods"], now, progress)
    return state, rec


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


@pytest.mark.parametrize("name", STATES)
def test_recorded_state(name: str) -> None:
    state, rec = run_state(name)
    expect = state["expect"]
    status = rec.status.wire()
    assert status["phase"] == expect["phase"], status
    got = conds(status)
    assert [c["type"] for c in status["conditions"]] == list(CONDITION_TYPES)
    for kind, (want_status, want_reason) in expect["conditions"].items():
        assert (got[kind]["status"], got[kind]["reason"]) == (want_status, want_reason), got[kind]
        assert got[kind]["message"], "every condition explains itself"
        assert got[kind]["observedGeneration"] == 1
    assert status["observedGeneration"] == 1
    if "message_contains" in expect:
        assert expect["message_contains"] in status["message"], status["message"]
    if "lastFailure" in expect:
        assert status["lastFailure"]["reason"] == expect["lastFailure"]
        assert status["lastFailure"]["message"]
    if "logTail_contains" in expect:
        assert expect["logTail_contains"] in status["lastFailure"]["logTail"]
    if "attempts_failed" in expect:
        assert status["attempts"]["failed"] == expect["attempts_failed"]
    if "engine" in expect:
        assert status["engine"]["name"] == expect["engine"]
        assert status["timings"]["generateSeconds"] > 0
        assert status["audio"]["sampleRate"] == 16000
    if "output" in expect:
        assert status["output"]["uri"] == expect["output"]
    if "durationSeconds" in expect:
        assert status["durationSeconds"] == expect["durationSeconds"]
        assert status["duration"] == human_duration(expect["durationSeconds"])
    if "progressText" in expect:
        assert status["progressText"] == expect["progressText"]
    if "queueSeconds" in expect:
        assert status["timings"]["queueSeconds"] == expect["queueSeconds"]
    assert rec.delete_job == bool(expect.get("delete_job"))
    assert not rec.create_job
    if status["phase"] == "Failed":
        assert any(e.type == "Warning" and e.reason == got["Failed"]["reason"] for e in rec.events)
        assert status["completionTime"]


@pytest.mark.parametrize("name", STATES)
def test_recorded_status_passes_the_crd_schema_and_nothing_is_pruned(name: str) -> None:
    """The API server drops status fields its schema does not know, silently: every recorded
    state's status must be valid against the CRD with every field kept."""
    _, rec = run_state(name)
    obj = {**load_tv(), "status": rec.status.wire()}
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert prunable(obj["status"], schema["properties"]["status"]) == []
    assert validate(obj, CRD) == []


def test_secrets_never_reach_status() -> None:
    for name in STATES:
        _, rec = run_state(name)
        assert "s3-creds" not in str(rec.status.wire()) or name == "container_config_error"


def test_new_object_asks_for_a_job_then_queues() -> None:
    tv = load_tv()
    now = dt.datetime(2026, 11, 25, 10, 0, 1, tzinfo=dt.UTC)
    rec = compute_status(tv, None, [], now)
    assert rec.create_job
    assert rec.status.wire()["phase"] == "Pending"
    assert conds(rec.status.wire())["Accepted"]["status"] == "True"


def test_suspended_object_gets_no_job() -> None:
    tv = load_tv()
    tv["spec"]["suspend"] = True
    rec = compute_status(tv, None, [], dt.datetime(2026, 11, 25, 10, 0, 1, tzinfo=dt.UTC))
    assert not rec.create_job
    assert rec.status.wire()["phase"] == "Suspended"


def test_invalid_spec_fails_without_a_job() -> None:
    tv = load_tv()
    tv["spec"]["video"] = {"width": 481}
    tv["spec"]["speakers"][0]["audio"] = "/data/voice.wav"
    rec = compute_status(tv, None, [], dt.datetime(2026, 11, 25, 10, 0, 1, tzinfo=dt.UTC))
    assert not rec.create_job
    assert rec.status.wire()["phase"] == "Failed"
    failed = conds(rec.status.wire())["Failed"]
    assert failed["reason"] == "InvalidSpec"
    # Field paths as the API server writes them.
    assert "spec.video.width" in failed["message"] and "spec.speakers[0].audio" in failed["message"]
    assert conds(rec.status.wire())["Accepted"]["status"] == "False"


def test_terminal_status_survives_the_job_ttl() -> None:
    _, rec = run_state("complete")
    tv = load_tv()
    tv["status"] = rec.status.wire()
    later = dt.datetime(2026, 11, 26, 11, 0, tzinfo=dt.UTC)
    after_ttl = compute_status(tv, None, [], later)
    assert after_ttl.status == rec.status
    assert not after_ttl.events and not after_ttl.create_job


def test_recompute_is_stable_and_keeps_transition_times() -> None:
    state, first = run_state("running")
    tv = load_tv()
    tv["status"] = first.status.wire()
    now = parse_time(state["now"])
    assert now is not None
    again = compute_status(
        tv, state["job"], state["pods"], now + dt.timedelta(minutes=5), Reading(Stage.GENERATE, 42.0)
    )
    assert again.status.conditions == first.status.conditions
    assert not again.events, "no transition, no event"


def test_progress_is_kept_between_log_reads() -> None:
    state, first = run_state("running")
    tv = load_tv()
    tv["status"] = first.status.wire()
    now = parse_time(state["now"])
    assert now is not None
    again = compute_status(tv, state["job"], state["pods"], now, None)
    assert again.status.wire()["progress"] == {"stage": "generate", "percent": 42.0}


def test_progress_shows_windows_and_the_frame_a_render_resumed_from() -> None:
    state = load_state("running")
    now = parse_time(state["now"])
    assert now is not None
    line = progress_line("generate", 42.0, Windows(done=3, total=10, resumed_from_frame=162))
    reading = parse_progress("loading\n" + line + "\n")
    rec = compute_status(load_tv(), state["job"], state["pods"], now, reading)
    wire = rec.status.wire()
    assert wire["progress"] == {
        "stage": "generate",
        "percent": 42.0,
        "windowsDone": 3,
        "windowsTotal": 10,
        "resumedFromFrame": 162,
    }
    assert wire["progressText"] == "generate 42% (3/10 windows)"


def test_a_resumed_render_says_so_in_the_status() -> None:
    state = load_state("complete")
    terminated = state["pods"][0]["status"]["containerStatuses"][0]["state"]["terminated"]
    resume = {"windowsDone": 3, "windowsTotal": 3, "windowFrames": 81, "resumedFromFrame": 162}
    terminated["message"] = json.dumps({**json.loads(terminated["message"]), "resume": resume})
    now = parse_time(state["now"])
    assert now is not None
    status = compute_status(load_tv(), state["job"], state["pods"], now).status.wire()
    assert status["resume"] == resume
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert prunable(status, schema["properties"]["status"]) == []
    assert validate({**load_tv(), "status": status}, CRD) == []


def test_terminal_never_reverts() -> None:
    _, failed = run_state("invalid_input")
    state = load_state("running")
    tv = load_tv()
    tv["status"] = failed.status.wire()
    now = parse_time(state["now"])
    assert now is not None
    # A contradictory later view (Job running again) must not un-fail the object.
    rec = compute_status(tv, state["job"], state["pods"], now)
    assert rec.status.wire()["phase"] in ("Running", "Failed")
    failed_job = load_state("invalid_input")["job"]
    rec2 = compute_status(tv, failed_job, [], now)
    assert rec2.status.wire()["phase"] == "Failed"


def test_transitions_emit_events() -> None:
    tv = load_tv()
    queued = load_state("queued_in_kueue")
    now = parse_time(queued["now"])
    assert now is not None
    rec = compute_status(tv, queued["job"], [], now)
    assert [(e.type, e.reason) for e in rec.events] == [("Normal", "Valid"), ("Normal", "QueuedInKueue")]
    tv["status"] = rec.status.wire()
    running = load_state("running")
    rec2 = compute_status(copy.deepcopy(tv), running["job"], running["pods"], now)
    reasons = [e.reason for e in rec2.events]
    assert "Admitted" in reasons and "PodRunning" in reasons
    assert (
        conds(rec2.status.wire())["Accepted"]["lastTransitionTime"]
        == conds(rec.status.wire())["Accepted"]["lastTransitionTime"]
    )


def test_spec_change_after_job_is_ignored_with_a_warning() -> None:
    from multitalk.operator import api, job_builder

    tv = load_tv()
    running = load_state("running")
    job = copy.deepcopy(running["job"])
    job["metadata"]["annotations"][job_builder.ANNOTATION_REQUEST_HASH] = job_builder.request_hash(
        api.parse_spec(tv["spec"])
    )
    now = parse_time(running["now"])
    assert now is not None
    first = compute_status(tv, job, running["pods"], now)
    tv["status"] = first.status.wire()
    tv["spec"]["prompt"] = "Something else."
    tv["metadata"]["generation"] = 2
    rec = compute_status(tv, job, running["pods"], now)
    assert conds(rec.status.wire())["Accepted"]["reason"] == "SpecChangeIgnored"
    assert [e.reason for e in rec.events] == ["SpecChangeIgnored"]
    assert rec.status.wire()["observedGeneration"] == 2
    assert rec.status.wire()["phase"] == "Running"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.9, "59s"), (83, "1m23s"), (3700, "1h1m")])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_phase_order() -> None:
    t, f = ConditionStatus.TRUE, ConditionStatus.FALSE
    both = {
        ConditionType.FAILED: Verdict(ConditionType.FAILED, t, "InvalidInput", "x"),
        ConditionType.COMPLETE: Verdict(ConditionType.COMPLETE, t, "Rendered", "y"),
    }
    assert derive_phase(both) == "Failed"
    queued = {ConditionType.ADMITTED: Verdict(ConditionType.ADMITTED, f, "QueuedInKueue", "z")}
    assert derive_phase(queued) == "Queued"


def stalled_at(now: str, **job_status: Any) -> Any:
    state = load_state("job_stalled")
    state["job"]["status"].update(job_status)
    when = parse_time(now)
    assert when is not None
    return compute_status(load_tv(), state["job"], state["pods"], when)


def test_stalled_job_is_reported_only_past_the_threshold_and_below_backoff_limit() -> None:
    # The last attempt ended at 10:03:00; STALL_SECONDS is 2 minutes.
    assert conds(stalled_at("2026-11-25T10:04:30Z").status.wire())["Running"]["reason"] == "Retrying"
    stalled = stalled_at("2026-11-25T10:05:30Z")
    running = conds(stalled.status.wire())["Running"]
    assert running["reason"] == "JobStalled" and "2m0s" in running["message"]
    assert "1 failed, backoffLimit 2" in running["message"]
    assert ("Warning", "JobStalled") in [(e.type, e.reason) for e in stalled.events]
    # Failed past backoffLimit: the Job is failing, not stalled; a live pod is a retry.
    assert conds(stalled_at("2026-11-25T10:09:00Z", failed=3).status.wire())["Running"]["reason"] != "JobStalled"
    assert conds(stalled_at("2026-11-25T10:09:00Z", active=1).status.wire())["Running"]["reason"] != "JobStalled"


def test_stalled_message_moves_once_a_minute_not_every_resync() -> None:
    a, b = stalled_at("2026-11-25T10:08:01Z"), stalled_at("2026-11-25T10:08:59Z")
    assert a.status.wire()["message"] == b.status.wire()["message"]
    assert stalled_at("2026-11-25T10:09:00Z").status.wire()["message"] != a.status.wire()["message"]


def test_refused_create_is_a_condition_and_the_status_still_advances() -> None:
    tv = load_tv()
    refused = ApiFailure(ApiCall.CREATE_JOB, 403, "Forbidden")
    rec = compute_status(tv, None, [], dt.datetime(2026, 11, 25, 10, 0, 1, tzinfo=dt.UTC), failures=[refused])
    status = rec.status.wire()
    assert status["observedGeneration"] == 1 and status["phase"] == "Pending"
    admitted = conds(status)["Admitted"]
    assert admitted["reason"] == "ApiCallFailed"
    assert "create_job" in admitted["message"] and "403 Forbidden" in admitted["message"]
    assert "create_job" in status["message"]
    assert ("Warning", "ApiCallFailed") in [(e.type, e.reason) for e in rec.events]


def test_refused_suspend_patch_leaves_the_phase_and_generation_moving() -> None:
    """Issue 16 item 1: a 403 on the Job patch froze the whole status (observedGeneration, phase)."""
    state = load_state("running")
    tv = load_tv()
    tv["spec"]["scheduling"] = {}  # no Kueue queue: the operator patches spec.suspend itself
    job = copy.deepcopy(state["job"])
    del job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"]
    now = parse_time(state["now"])
    assert now is not None
    tv["status"] = compute_status(tv, job, state["pods"], now).status.wire()
    tv["spec"]["suspend"] = True
    tv["metadata"]["generation"] = 2
    asked = compute_status(tv, job, state["pods"], now)
    assert asked.job_suspend is True
    refused = ApiFailure(ApiCall.PATCH_JOB, 403, "Forbidden")
    rec = compute_status(tv, job, state["pods"], now, failures=[refused])
    status = rec.status.wire()
    assert status["observedGeneration"] == 2 and status["phase"] == "Running"
    admitted = conds(status)["Admitted"]
    assert admitted["reason"] == "ApiCallFailed" and "patch_job" in admitted["message"]
    assert "HTTP 403" in admitted["message"]
    assert validate({**tv, "status": status}, CRD) == []
