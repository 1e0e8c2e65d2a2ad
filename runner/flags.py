"""`multitalk-runner render` flags, derived from RenderRequest (runner/request.py).

Every scalar field of the request (and of its sections: video, sampling, lite, output,
storage) gets a flag: its type, choices and help come from the field, so a field added
to the request is a flag too. Most flags are named after their path (`--sampling-steps`,
`--lite-head-motion`); the everyday ones keep the short names below. Lists (speakers,
LoRAs) have no flag: `--audio` (repeatable) builds speakers, the rest needs --request.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from multitalk.runner.request import RenderRequest

# Short names of the everyday flags (path -> flag, metavar).
SHORT: dict[str, tuple[str, str | None]] = {
    "image": ("--image", "URI"),
    "video.width": ("--width", None),
    "video.height": ("--height", None),
    "video.fps": ("--fps", None),
    "video.duration_seconds": ("--duration", "SECONDS"),
    "video.max_duration_seconds": ("--max-duration", "SECONDS"),
    "sampling.seed": ("--seed", None),
    "output.uri": ("--out", "URI"),
    "output.overwrite": ("--overwrite", None),
    "storage.endpoint": ("--endpoint", "URL"),
    "storage.region": ("--region", None),
}

METAVARS: dict[type, str] = {int: "N", float: "X", str: "TEXT"}


@dataclass(frozen=True)
class Flag:
    path: tuple[str, ...]  # Python attribute names, e.g. ("video", "width")
    wire: tuple[str, ...]  # the same path on the wire (camelCase)
    option: str
    kind: type | None  # int, float, str; None for a switch (bool)
    choices: tuple[str, ...] | None
    help: str
    metavar: str | None

    @property
    def dest(self) -> str:
        return "_".join(self.path)


def _scalar(annotation: Any) -> tuple[type | None, tuple[str, ...] | None] | None:
    """(argparse type, choices) of a scalar field (None type: a switch); None for the rest."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _scalar(args[0])
    if typing.get_origin(annotation) is Literal:
        return str, tuple(str(a) for a in typing.get_args(annotation))
    if annotation is bool:
        return None, None
    if annotation in (int, float, str):
        return annotation, None
    return None


def _section(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _help(field: FieldInfo) -> str:
    text = (field.description or "").rstrip(".")
    default = field.get_default(call_default_factory=True)
    if default is not None and default is not False and default != "":
        text += f" (default {default})"
    return text


def flags(model: type[BaseModel] = RenderRequest, prefix: tuple[str, ...] = ()) -> Iterator[Flag]:
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        section = _section(field.annotation)
        if section is not None:
            yield from flags(section, path)
            continue
        scalar = _scalar(field.annotation)
        if scalar is None:
            continue  # a list or tuple: speakers (--audio), LoRAs, bbox
        kind, choices = scalar
        dotted = ".".join(path)
        option, metavar = SHORT.get(dotted, ("--" + "-".join(path).replace("_", "-"), None))
        if metavar is None and kind is not None and choices is None:
            metavar = METAVARS[kind]
        wire = tuple(to_camel(p) for p in path)
        yield Flag(path, wire, option, kind, choices, _help(field), metavar)


FLAGS: tuple[Flag, ...] = tuple(flags())


def add_request_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("request fields (override --request / MULTITALK_REQUEST)")
    for flag in FLAGS:
        if flag.kind is None:
            group.add_argument(flag.option, dest=flag.dest, action="store_true", default=None, help=flag.help)
        else:
            group.add_argument(
                flag.option, dest=flag.dest, type=flag.kind, choices=flag.choices, metavar=flag.metavar, help=flag.help
            )


def apply_flags(args: argparse.Namespace, data: dict[str, Any], section_error: type[Exception]) -> None:
    """Set the given flags' values into a wire-format request dict (camelCase keys)."""
    for flag in FLAGS:
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        node = data
        for part in flag.wire[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise section_error("must be an object", part)
        node[flag.wire[-1]] = value
