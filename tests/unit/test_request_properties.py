"""Properties of the request models, over generated requests (hypothesis).

Requests are drawn near the edge of validity: each field takes valid values, boundary
values and wrong ones, so that both verdicts come up often.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from multitalk.runner.cli import parse_request_json, validate_request
from multitalk.runner.errors import InvalidInput
from multitalk.runner.image import BBOX_OVERHANG, check_bbox
from multitalk.runner.request import RenderRequest

URIS = ["a.wav", "s3://bucket/a.wav", "https://host/a.wav", "file:///a.wav", "data:audio/wav;base64,AAAA"]
BAD_URIS = ["", " ", "ftp://host/a.wav", "s3://B/a.wav", "s3://bucket"]


def _pick(valid: list[Any], wrong: list[Any]) -> st.SearchStrategy[Any]:
    """A valid value seven times in eight: requests with several fields still pass often."""
    return st.integers(0, 7).flatmap(lambda i: st.sampled_from(wrong if i == 0 else valid))


valid_boxes = st.tuples(
    st.floats(0, 2000, allow_nan=False), st.floats(0, 2000, allow_nan=False), st.floats(1, 500), st.floats(1, 500)
).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
boxes = st.integers(0, 7).flatmap(
    lambda i: st.lists(st.floats(-10, 3000, allow_nan=False), min_size=3, max_size=5) if i == 0 else valid_boxes
)
speakers = st.fixed_dictionaries(
    {"audio": _pick(URIS, BAD_URIS)},
    optional={"bbox": boxes, "transcript": st.text(max_size=8)},
)
requests = st.fixed_dictionaries(
    {
        "speakers": st.integers(0, 7).flatmap(
            lambda i: st.lists(speakers, min_size=1, max_size=2) if i else st.sampled_from([[], [{"audio": "a"}] * 3])
        ),
        "output": st.fixed_dictionaries(
            {"uri": _pick(["out/v.mp4", "s3://bucket/v.mp4"], ["out/v.mov", "https://h/v.mp4"])}
        ),
    },
    optional={
        "engine": _pick(["auto", "multitalk", "lite", "placeholder"], ["magic", None]),
        "allowFallback": _pick([True, False], ["yes"]),
        "image": _pick(URIS, [*BAD_URIS, None]),
        "audioMode": _pick(["sequential", "simultaneous"], ["karaoke"]),
        "video": st.fixed_dictionaries(
            {},
            optional={
                "width": _pick([64, 480, 1920, 480.0], [-2, 0, 63, 65, 1921, 480.5, "480"]),
                "height": _pick([64, 1080], [481, 1922]),
                "fps": _pick([1, 25, 60], [0, 61, 24.5]),
                "maxDurationSeconds": _pick([0.01, 60, 600], [0, 600.5, -1]),
                "durationSeconds": _pick([0.5, 59.9, 120], [0, 601]),
            },
        ),
        "sampling": st.fixed_dictionaries(
            {},
            optional={
                "steps": _pick([1, 40, 100], [0, 101]),
                "seed": _pick([0, 2**32 - 1], [-1, 2**32]),
                "teaCache": _pick([0, 0.3, 1], [1.5]),
                "loras": st.lists(
                    st.fixed_dictionaries(
                        {
                            "path": _pick(
                                ["a.safetensors", "x/a.safetensors"],
                                ["/a.safetensors", "x/../a.safetensors", "a.bin", ""],
                            )
                        },
                        optional={"scale": _pick([0, 1, 4], [4.5, -1])},
                    ),
                    max_size=5,
                ),
            },
        ),
        "storage": st.fixed_dictionaries(
            {},
            optional={"endpoint": _pick(["http://minio:9000"], ["minio:9000"]), "region": _pick(["us-east-1"], ["US"])},
        ),
    },
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=24,
)


def _verdict(text: str) -> RenderRequest | InvalidInput:
    try:
        return validate_request(parse_request_json(text, "MULTITALK_REQUEST"))
    except InvalidInput as exc:
        return exc


@settings(max_examples=400)
@given(st.one_of(requests.map(json.dumps), json_values.map(json.dumps), st.text(max_size=40)))
def test_any_text_is_accepted_or_refused_naming_a_field_it_has(text: str) -> None:
    verdict = _verdict(text)
    if isinstance(verdict, RenderRequest):
        return
    assert verdict.field, verdict
    if verdict.field != "request":  # a field path: its first part is a key of the document
        first = re.split(r"[.\[]", verdict.field)[0]
        doc = json.loads(text)
        # or a field it lacks: the required ones, and the image two speakers require
        assert first in doc or first in ("speakers", "output", "image"), (verdict.field, doc)


@settings(max_examples=300)
@given(requests)
def test_accepted_requests_survive_their_wire_format(data: dict[str, Any]) -> None:
    verdict = _verdict(json.dumps(data))
    if isinstance(verdict, RenderRequest):
        text = json.dumps(verdict.wire(), allow_nan=False)  # nothing a Kubernetes object could not hold
        assert _verdict(text) == verdict


@given(valid_boxes, valid_boxes)
def test_two_bboxes_are_refused_exactly_when_identical(first: list[float], second: list[float]) -> None:
    data = {
        "image": "two.jpg",
        "speakers": [{"audio": "a.wav", "bbox": first}, {"audio": "b.wav", "bbox": second}],
        "output": {"uri": "out/v.mp4"},
    }
    verdict = _verdict(json.dumps(data))
    if first == second:
        assert isinstance(verdict, InvalidInput) and verdict.field == "speakers", verdict
    else:
        assert isinstance(verdict, RenderRequest)


@given(valid_boxes, st.integers(16, 4000), st.integers(16, 4000))
def test_a_bbox_is_refused_exactly_when_it_misses_or_overhangs_the_image(box: list[float], w: int, h: int) -> None:
    top, left, bottom, right = box
    off = top >= h or left >= w or bottom > h * (1 + BBOX_OVERHANG) or right > w * (1 + BBOX_OVERHANG)
    try:
        check_bbox((top, left, bottom, right), (w, h), "speakers[0].bbox")
    except InvalidInput as exc:
        assert off and exc.field == "speakers[0].bbox" and f"{w}x{h}" in exc.message
    else:
        assert not off
