"""The generated CRD: fresh, structural, and refusing bad objects with messages naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from bad_specs import BAD, DELETE, GOOD, Bad, bad_object
from crd_schema_check import validate

from multitalk.operator import crd
from multitalk.operator.api import InvalidSpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("**/talkingvideo*.yaml"))  # Secrets, PVCs, GitOps files aside
CRD = crd.crd_manifest()


def _talkingvideos(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "TalkingVideo"]


def test_checked_in_crd_is_fresh() -> None:
    assert crd.CRD_PATH.read_text() == crd.render_yaml(), "run: python -m multitalk.operator.crd"
    assert crd.main(["--check"]) == 0


def test_check_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(crd.render_yaml().replace("shortNames", "shortNamez"))
    assert crd.main(["--check", "--out", str(stale)]) == 1


def test_names_columns_and_subresources() -> None:
    spec = CRD["spec"]
    assert spec["names"]["shortNames"] == ["tv"]
    assert spec["names"]["categories"] == ["multitalk"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Phase", "Engine", "Progress", "Duration", "Age", "Output", "Node", "Message"]
    assert columns["Engine"]["jsonPath"] == ".status.engine.name"
    assert all(columns[n].get("priority") == 1 for n in ("Output", "Node", "Message"))


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in node.get("properties", {}).items():
            out.extend(_walk(sub, f"{path}.{key}"))
        if isinstance(node.get("items"), dict):
            out.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


def test_schema_is_structural_and_explained() -> None:
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    forbidden = {"anyOf", "oneOf", "allOf", "$ref", "prefixItems", "title", "const", "nullable"}
    for path, node in _walk(schema):
        assert not forbidden & set(node), f"{path} has {forbidden & set(node)}"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if path.startswith(".spec") and path.count(".") <= 2 and "[]" not in path and "{}" not in path:
            assert node.get("description"), f"{path} needs a description for kubectl explain"
    status = schema["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    for field in (
        "observedGeneration",
        "phase",
        "startTime",
        "completionTime",
        "durationSeconds",
        "job",
        "pod",
        "attempts",
        "engine",
        "timings",
        "audio",
        "progress",
        "output",
        "lastFailure",
    ):
        assert field in status, field
    assert "queueSeconds" in status["timings"]["properties"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    docs = _talkingvideos(path)
    assert docs, f"{path} has no TalkingVideo"
    for doc in docs:
        assert validate(doc, CRD) == []
        parse_spec(doc["spec"])  # the operator agrees with the API server


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 3


MINIMAL = _talkingvideos(ROOT / "examples" / "talkingvideo-minimal.yaml")[0]


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(MINIMAL)
    node: Any = obj
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last = parts[-1]
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return obj


def test_the_good_object_is_good() -> None:
    assert validate(GOOD, CRD) == []
    parse_spec(GOOD["spec"])


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_bad_specs_are_refused_by_the_schema_and_the_operator(bad: Bad) -> None:
    """Both judges of a spec, on one table: the CRD (OpenAPI + CEL, as the API server checks
    it) and the operator's own models. Each refusal names the field."""
    obj = bad_object(bad)
    errors = validate(obj, CRD)
    assert any(e.startswith(bad.field) for e in errors), errors or "the API server would accept this"
    with pytest.raises(InvalidSpecError) as refused:
        parse_spec(obj["spec"])
    named = bad.field.removeprefix("spec.").split("[")[0].split(".")[-1]
    assert named in str(refused.value), refused.value


def test_every_cel_rule_has_a_bad_spec() -> None:
    """Each CEL rule of the CRD (bar immutability, tested below) refuses an entry of the table."""
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = {r["rule"] for _, node in _walk(schema) for r in node.get("x-kubernetes-validations", [])}
    fired: set[str] = set()
    for bad in BAD:
        validate(bad_object(bad), CRD, fired=fired)
    assert {r for r in rules if "oldSelf" not in r} - fired == set()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.prompt", "a different scene"),
        ("spec.output", {"uri": "s3://media-out/other.mp4"}),
        ("spec.speakers", [{"audio": "s3://media-in/other.wav"}]),
        ("spec.image", DELETE),
        ("spec.video", {"width": 640}),
        ("spec.runner", {"image": "evil/runner:latest"}),
    ],
)
def test_render_fields_are_immutable(path: str, value: Any) -> None:
    errors = validate(_with(path, value), CRD, old=MINIMAL)
    assert any("immutable" in e or "cannot be added or removed" in e for e in errors), errors


def test_suspend_and_pending_deadline_may_change() -> None:
    assert validate(_with("spec.suspend", True), CRD, old=MINIMAL) == []
    assert validate(_with("spec.pendingDeadlineSeconds", 3600), CRD, old=MINIMAL) == []


def test_adding_an_optional_field_later_is_refused() -> None:
    errors = validate(_with("spec.modelCache", {"claimName": "models"}), CRD, old=MINIMAL)
    assert any(e.startswith("spec.modelCache") for e in errors), errors


def test_inline_inputs_stay_below_the_environment_limit() -> None:
    """MULTITALK_REQUEST is one environment variable: Linux refuses one over 128 KiB."""
    from multitalk.operator import api, job_builder

    big = "data:image/png;base64," + "A" * (api.MAX_INLINE_IMAGE - 30)
    audio = "data:audio/wav;base64," + "A" * (api.MAX_INLINE_AUDIO - 30)
    spec = {
        "image": big,
        "speakers": [{"audio": audio, "transcript": "x" * 5000}, {"audio": audio, "transcript": "y" * 5000}],
        "prompt": "p" * 2000,
        "output": {"uri": "s3://bkt/o.mp4"},
    }
    assert validate({"apiVersion": "multitalk.dev/v1alpha1", "kind": "TalkingVideo", "spec": spec}, CRD) == []
    assert len(job_builder.request_json(api.parse_spec(spec)).encode()) < 128 * 1024
    too_big = {**spec, "image": big + "A" * 100}
    errors = validate({"apiVersion": "multitalk.dev/v1alpha1", "kind": "TalkingVideo", "spec": too_big}, CRD)
    assert any(e.startswith("spec.image") for e in errors)
