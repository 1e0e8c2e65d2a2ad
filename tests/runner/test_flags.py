"""The render command's flags are derived from RenderRequest: every scalar field has one."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from multitalk.runner.cli import build_parser, request_from_args
from multitalk.runner.engines.registry import ENGINES
from multitalk.runner.flags import FLAGS, SHORT
from multitalk.runner.request import AudioMode, EngineName, RenderRequest

BASE = ["render", "--audio", "a.wav", "--out", "o.mp4"]
# Fields without a flag: lists and tuples (speakers come from --audio, the rest from --request).
NO_FLAG = {"speakers", "sampling.loras"}
# Values that a field's own bounds do not make valid (patterns, cross-field rules).
SPECIAL: dict[tuple[str, ...], tuple[list[str], Any]] = {
    ("output", "uri"): (["s3://bucket/x.mp4"], "s3://bucket/x.mp4"),
    ("video", "duration_seconds"): (["5"], 5.0),
    ("storage", "endpoint"): (["http://minio:9000"], "http://minio:9000"),
    ("storage", "region"): (["eu-west-1"], "eu-west-1"),
}


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaves(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def _value(field: FieldInfo) -> tuple[list[str], Any]:
    """A valid command-line value for a field, other than its default, and what it parses to."""
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        choice = next(a for a in reversed(args) if a != field.default)
        return [str(choice)], choice
    kind = args[0] if args and typing.get_origin(annotation) is not typing.Literal else annotation
    if kind is bool:
        return [], True
    if kind is str:
        return ["https://example.org/x"], "https://example.org/x"
    bounds = [getattr(m, k) for m in field.metadata for k in ("ge", "le") if getattr(m, k, None) is not None]
    value = next(b for b in bounds if b != field.default)  # the lower bound, else the upper
    return [str(value)], kind(value)


def test_every_scalar_request_field_has_exactly_one_flag() -> None:
    leaves = dict(_leaves(RenderRequest))
    flagged = [".".join(f.path) for f in FLAGS]
    assert len(flagged) == len(set(flagged))
    assert set(flagged) == set(leaves) - NO_FLAG
    assert len({f.option for f in FLAGS}) == len(FLAGS)


def test_the_everyday_short_names_stay() -> None:
    options = {".".join(f.path): f.option for f in FLAGS}
    for path, (option, _) in SHORT.items():
        assert options[path] == option
    assert options["engine"] == "--engine" and options["allow_fallback"] == "--allow-fallback"


@pytest.mark.parametrize("flag", FLAGS, ids=[f.option for f in FLAGS])
def test_each_flag_sets_its_request_field(flag: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTITALK_REQUEST", raising=False)
    leaves = dict(_leaves(RenderRequest))
    argv, expected = SPECIAL.get(flag.path) or _value(leaves[".".join(flag.path)])
    base = [a for a in BASE if a not in ("--out", "o.mp4")] if flag.option == "--out" else BASE
    data = request_from_args(build_parser().parse_args([*base, flag.option, *argv]))
    node: Any = RenderRequest.model_validate(data)
    for part in flag.path:
        node = getattr(node, part)
    assert node == expected


def test_choices_come_from_the_model() -> None:
    by_path = {f.path: f for f in FLAGS}
    assert by_path[("engine",)].choices == typing.get_args(EngineName)
    assert by_path[("audio_mode",)].choices == typing.get_args(AudioMode)


def test_engine_names_are_the_registry() -> None:
    """EngineName (the request, the CRD, --engine, check --require) and the registry agree."""
    assert list(ENGINES) == [name for name in typing.get_args(EngineName) if name != "auto"]
