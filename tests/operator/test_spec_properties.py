"""The API server (the CRD's schema and CEL rules) and the operator's pydantic models accept
and refuse the same TalkingVideo specs, over generated specs (hypothesis).

Both verdicts matter: a spec the schema admits but the models refuse ends as
Failed/InvalidSpec after apply instead of at apply; one the models admit but the schema
refuses cannot be applied at all. Specs are drawn near the edge of validity (each field
valid seven times in eight, else a boundary or wrong value); the schema side runs the
checked-in CRD through crd_schema_check (OpenAPI validation, then CEL), as kube-apiserver
does. Written against the current operator/api.py and crds/: when the operator's spec
changes, this file follows it.

Values of the wrong JSON type are left out on purpose: the schema refuses them, while
pydantic's lax mode coerces some ("yes" -> true, "480" -> 480). That is harmless where the
API server checks types before the operator sees an object.
"""

from __future__ import annotations

from typing import Any

from crd_schema_check import validate
from hypothesis import given, settings
from hypothesis import strategies as st

from multitalk.operator import crd
from multitalk.operator.api import InvalidSpecError, parse_spec

CRD = crd.crd_manifest()


def _pick(valid: list[Any], wrong: list[Any]) -> st.SearchStrategy[Any]:
    return st.integers(0, 7).flatmap(lambda i: st.sampled_from(wrong if i == 0 else valid))


AUDIO = ["s3://media-in/a.wav", "https://host.example/a.wav", "data:audio/wav;base64,UklGRg=="]
BAD_AUDIO = ["a.wav", "file:///a.wav", "s3://B/a.wav", "ftp://h/a.wav", "", "data:" + "A" * (24 * 1024)]
valid_boxes = st.tuples(st.integers(0, 900), st.integers(0, 900), st.integers(1, 300), st.integers(1, 300)).map(
    lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]
)
boxes = st.integers(0, 7).flatmap(
    lambda i: valid_boxes if i else st.sampled_from([[10, 0, 5, 20], [0, 30, 10, 20], [-1, 0, 5, 5], [1, 2, 3]])
)
speakers = st.fixed_dictionaries(
    {"audio": _pick(AUDIO, BAD_AUDIO)},
    optional={"bbox": boxes, "transcript": _pick(["hello there"], ["x" * 5001])},
)
specs = st.fixed_dictionaries(
    {
        "speakers": st.integers(0, 7).flatmap(
            lambda i: (
                st.lists(speakers, min_size=1, max_size=2)
                if i
                else st.sampled_from([[], [{"audio": "s3://bkt/a.wav"}] * 3])
            )
        ),
        "output": st.fixed_dictionaries(
            {"uri": _pick(["s3://media-out/v.mp4"], ["s3://media-out/v.mov", "out/v.mp4", "file:///v.mp4"])},
            optional={"overwrite": st.booleans()},
        ),
    },
    optional={
        "engine": _pick(["auto", "multitalk", "lite", "placeholder"], ["magic"]),
        "allowFallback": st.booleans(),
        "image": _pick(["s3://media-in/face.jpg", "https://host.example/face.png"], ["face.jpg", "s3://x/"]),
        "audioMode": _pick(["sequential", "simultaneous"], ["karaoke"]),
        "prompt": _pick(["a studio", ""], ["p" * 2001]),
        "video": st.fixed_dictionaries(
            {},
            optional={
                "width": _pick([64, 480, 1920], [0, 63, 481, 1921, 480.5]),
                "height": _pick([64, 1080], [66.6, 1922]),
                "fps": _pick([1, 25, 60], [0, 61]),
                "maxDurationSeconds": _pick([0.5, 60, 600], [0, 600.5, -1]),
                "durationSeconds": _pick([0.5, 30, 120], [0, 601]),
            },
        ),
        "sampling": st.fixed_dictionaries(
            {},
            optional={
                "steps": _pick([1, 40, 100], [0, 101]),
                "seed": _pick([0, 2**32 - 1], [-1, 2**32]),
                "shift": _pick([0.5, 7, 20], [0, 20.5]),
                "teaCache": _pick([0, 0.3, 1], [1.5]),
                "loras": st.lists(
                    st.fixed_dictionaries(
                        {"path": _pick(["a.safetensors", "x/a.safetensors"], ["/a.safetensors", "x/../a.safetensors"])},
                        optional={"scale": _pick([0, 1, 4], [4.5])},
                    ),
                    max_size=5,
                ),
            },
        ),
        "lite": st.fixed_dictionaries(
            {}, optional={"expression": _pick([0, 1, 2], [2.5]), "headMotion": _pick([1], [-1])}
        ),
        "storage": st.fixed_dictionaries(
            {},
            optional={
                "endpoint": _pick(["http://minio.minio:9000", "https://s3.example"], ["minio:9000"]),
                "region": _pick(["us-east-1"], ["US EAST"]),
                "secretRef": st.fixed_dictionaries({"name": _pick(["s3-creds"], ["S3_Creds", ""])}),
            },
        ),
        "runner": st.fixed_dictionaries(
            {},
            optional={
                "image": _pick(["registry.example/runner:1"], [""]),
                "env": st.lists(
                    st.fixed_dictionaries(
                        {"name": _pick(["HF_HOME", "LOG_LEVEL"], ["MULTITALK_REQUEST", "1BAD", ""])},
                        optional={"value": st.just("x")},
                    ),
                    max_size=3,
                ),
            },
        ),
        "scheduling": st.fixed_dictionaries(
            {},
            optional={
                "queueName": _pick(["gpu-queue"], ["GPU Queue"]),
                "priorityClassName": _pick(["high"], ["High_Priority"]),
            },
        ),
        "suspend": st.booleans(),
        "backoffLimit": _pick([0, 2, 10], [-1, 11]),
        "activeDeadlineSeconds": _pick([60, 7200], [59]),
        "pendingDeadlineSeconds": _pick([30, 900], [29, 86401]),
        "ttlSecondsAfterFinished": _pick([0, 86400], [-1]),
    },
)


def _schema_errors(spec: dict[str, Any]) -> list[str]:
    return validate({"apiVersion": "multitalk.dev/v1alpha1", "kind": "TalkingVideo", "spec": spec}, CRD)


def _model_error(spec: dict[str, Any]) -> str | None:
    try:
        parse_spec(spec)
    except InvalidSpecError as exc:
        return str(exc)
    return None


@settings(max_examples=300)
@given(specs)
def test_schema_and_models_agree(spec: dict[str, Any]) -> None:
    schema, model = _schema_errors(spec), _model_error(spec)
    assert bool(schema) == bool(model), f"schema: {schema or 'accepts'}; models: {model or 'accept'}"


def test_the_generated_specs_reach_both_verdicts() -> None:
    """The property above means something only if both verdicts come up often."""
    verdicts: list[bool] = []

    @settings(max_examples=200)
    @given(specs)
    def sample(spec: dict[str, Any]) -> None:
        verdicts.append(_model_error(spec) is None)

    sample()
    assert 0.1 < sum(verdicts) / len(verdicts) < 0.9, sum(verdicts) / len(verdicts)


def test_identical_bboxes_are_refused_at_apply() -> None:
    box = [40, 10, 200, 150]
    spec = {
        "image": "s3://media-in/two.jpg",
        "speakers": [{"audio": "s3://media-in/a.wav", "bbox": box}, {"audio": "s3://media-in/b.wav", "bbox": box}],
        "output": {"uri": "s3://media-out/v.mp4"},
    }
    assert "spec.speakers: speakers[1].bbox is the same box" in (_model_error(spec) or "")
    assert any(e.startswith("spec.speakers") and "same box" in e for e in _schema_errors(spec))
