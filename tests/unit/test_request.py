"""The request model: defaults, camelCase wire format, and errors that name the field."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from multitalk.runner.request import RenderRequest, uri_scheme

MINIMAL = {"speakers": [{"audio": "hello.wav"}], "output": {"uri": "out/hello.mp4"}}


def _error_locs(data: dict[str, object]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        RenderRequest.model_validate(data)
    return [".".join(str(p) for p in err["loc"]) for err in info.value.errors()]


def test_defaults_and_round_trip() -> None:
    req = RenderRequest.model_validate(MINIMAL)
    assert req.engine == "auto"
    assert req.video.fps == 25
    wire = req.wire()
    assert wire["video"]["maxDurationSeconds"] == 60.0
    assert RenderRequest.model_validate(wire) == req


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"video": {"width": 481}}, "video.width"),
        ({"video": {"fps": -1}}, "video.fps"),
        ({"engine": "magic"}, "engine"),
        ({"speakers": []}, "speakers"),
        ({"speakers": [{"audio": "ftp://x/y.wav"}]}, "speakers.0.audio"),
        ({"speakers": [{"audio": "a.wav", "bbox": [10, 0, 5, 20]}]}, "speakers.0.bbox"),
        ({"output": {"uri": "https://x/y.mp4"}}, "output.uri"),
        ({"sampling": {"loras": [{"path": "../etc/x.safetensors"}]}}, "sampling.loras.0.path"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_are_named(patch: dict[str, object], loc: str) -> None:
    assert loc in _error_locs({**MINIMAL, **patch})


def test_two_speakers_need_an_image() -> None:
    data = {**MINIMAL, "speakers": [{"audio": "a.wav"}, {"audio": "b.wav"}]}
    with pytest.raises(ValidationError, match="two speakers need an image"):
        RenderRequest.model_validate(data)


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("s3://b/k", "s3"),
        ("face.jpg", ""),
        ("C:\\x.jpg", ""),
        ("data:image/png;base64,AA", "data"),
        ("file:///x", "file"),
    ],
)
def test_uri_scheme(uri: str, scheme: str) -> None:
    assert uri_scheme(uri) == scheme


def test_identical_bboxes_are_refused_naming_the_second_speaker() -> None:
    box = [100, 80, 300, 240]
    data = {
        **MINIMAL,
        "image": "two.jpg",
        "speakers": [{"audio": "a.wav", "bbox": box}, {"audio": "b.wav", "bbox": box}],
    }
    with pytest.raises(ValidationError) as info:
        RenderRequest.model_validate(data)
    (err,) = info.value.errors()
    assert err["loc"] == ("speakers",)  # where the API server reports the CEL form (no list index there)
    assert "speakers[1].bbox is the same box as speakers[0].bbox" in err["msg"] and "[100, 80, 300, 240]" in err["msg"]
    other = {**data, "speakers": [{"audio": "a.wav", "bbox": box}, {"audio": "b.wav", "bbox": [100, 300, 300, 460]}]}
    assert RenderRequest.model_validate(other).speakers[1].bbox == (100, 300, 300, 460)


@pytest.mark.parametrize(
    ("text", "loc"),
    [
        ('{"speakers": [{"audio": "a.wav", "bbox": [0, 0, Infinity, 10]}]}', "speakers.0.bbox.2"),
        ('{"speakers": [{"audio": "a.wav", "bbox": [NaN, 0, 10, 10]}]}', "speakers.0.bbox.0"),
        ('{"lite": {"expression": NaN}}', "lite.expression"),
    ],
)
def test_json_nan_and_infinity_are_refused(text: str, loc: str) -> None:
    # Python's JSON reader accepts these literals; no field may hold them.
    assert loc in _error_locs({**MINIMAL, **json.loads(text)})


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"speakers": [{"audio": "a\x00b.wav"}]}, "speakers.0.audio"),
        ({"image": "file:///faces/a%00.jpg"}, "image"),
        ({"output": {"uri": "out/a\x00b.mp4"}}, "output.uri"),
    ],
)
def test_local_paths_with_a_nul_character_are_refused(patch: dict[str, object], loc: str) -> None:
    # The operating system cannot open them: before, the runner failed with ValueError (exit 1).
    assert loc in _error_locs({**MINIMAL, **patch})


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"speakers": [{"audio": "file://[wd"}]}, "speakers.0.audio"),  # urlsplit: Invalid IPv6 URL (was exit 1)
        ({"image": "https://[::1/face.jpg"}, "image"),
        ({"image": "https:///face.jpg"}, "image"),
        ({"speakers": [{"audio": "file://fileserver/a.wav"}]}, "speakers.0.audio"),  # was read as /a.wav
        ({"output": {"uri": "file://[x/v.mp4"}}, "output.uri"),
    ],
)
def test_malformed_uris_are_refused(patch: dict[str, object], loc: str) -> None:
    assert loc in _error_locs({**MINIMAL, **patch})


def test_well_formed_file_and_https_uris_are_accepted() -> None:
    data = {**MINIMAL, "image": "https://[::1]:8443/face.jpg", "speakers": [{"audio": "file://localhost/a.wav"}]}
    assert RenderRequest.model_validate(data).image == "https://[::1]:8443/face.jpg"
