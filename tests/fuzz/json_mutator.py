"""A structure-aware libFuzzer mutator for JSON documents (the request target).

Byte flips on JSON mostly make text that json.loads refuses at once, so the request models
behind it would hardly be reached. This mutator parses the input, changes one node (a
value swapped for an edge value or one of another type, a key dropped, a known field
added, a list item repeated or dropped, a string mutated byte-wise, a value nested a
thousand levels deep) and writes the JSON
back; one time in eight, or when the input is not JSON, it leaves the bytes to libFuzzer's
own mutations so that malformed JSON is still tried.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

EDGE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    15,
    16,
    63,
    64,
    65,
    481,
    1920,
    1921,
    2**31,
    2**32,
    2**63,
    -(2**63),
    10**400,
    0.0,
    -0.0,
    0.05,
    0.1,
    1e-9,
    599.99,
    600.0,
    600.01,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    " ",
    "\x00",
    "a" * 5001,
    "..",
    "../x.safetensors",
    "x.safetensors",
    "s3://",
    "s3://b/k",
    "s3://bucket/k.mp4",
    "https://",
    "https://host/x.wav",
    "file:///etc/passwd",
    "data:,x",
    "data:audio/wav;base64,",
    "data:;base64,@@",
    "data:image/png;base64,iVBORw0KGgo=",
    "ftp://x/y",
    "C:\\x.wav",
    "out/x.mp4",
    "out/x.MP4",
    "x.mov",
    "auto",
    "multitalk",
    "lite",
    "placeholder",
    "sequential",
    "simultaneous",
    [],
    [0, 0, 1, 1],
    [0, 0, 5000, 5000],
    [10, 0, 5, 20],
    [1, 2, 3],
    [{}],
    {},
    {"audio": "a.wav"},
]


_NEST = "\x00nest here\x00"


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*path, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_paths(value, (*path, i)))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def make_mutator(
    field_names: list[str], byte_mutate: Callable[[bytes, int], bytes]
) -> Callable[[bytes, int, int], bytes]:
    """A libFuzzer custom mutator (data, max_size, seed) -> data; byte_mutate is atheris.Mutate."""

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            return byte_mutate(data, max_size)
        if rng.random() < 0.125:
            return byte_mutate(data, max_size)
        path = rng.choice(_paths(doc))
        node = _get(doc, path)
        choice = rng.randrange(7)
        if choice == 0:
            doc = _replace(doc, path, rng.choice(EDGE_VALUES))
        elif choice == 1 and isinstance(node, dict):
            node[rng.choice(field_names)] = rng.choice(EDGE_VALUES)
        elif choice == 2 and isinstance(node, dict) and node:
            del node[rng.choice(list(node))]
        elif choice == 3 and isinstance(node, list) and node:
            i = rng.randrange(len(node))
            if rng.random() < 0.5:
                node.insert(i, json.loads(json.dumps(node[i])))
            else:
                del node[i]
        elif choice == 4 and isinstance(node, str):
            raw = byte_mutate(node.encode(), max(len(node) * 2, 16))
            doc = _replace(doc, path, raw.decode("utf-8", "replace"))
        elif choice == 5 and isinstance(node, int | float) and not isinstance(node, bool):
            step = rng.choice([-1, 1]) if isinstance(node, int) else rng.choice([-1.0, 1.0, 0.5, -0.5, 1e-9])
            doc = _replace(doc, path, node + step if rng.random() < 0.5 else -node)
        elif choice == 6:  # nesting: JSON readers and validators recurse once per level
            depth = rng.choice([2, 64, 900, 1100, 3000])
            opener, closer = ("[", "]") if rng.random() < 0.5 else ('{"x":', "}")
            text = json.dumps(_replace(doc, path, _NEST), allow_nan=True)
            inner = json.dumps(node, allow_nan=True)
            out = text.replace(json.dumps(_NEST), opener * depth + inner + closer * depth, 1).encode()
            return out if len(out) <= max_size else data[:max_size]
        else:
            doc = _replace(doc, path, rng.choice(EDGE_VALUES))
        out = json.dumps(doc, allow_nan=True).encode()
        return out if len(out) <= max_size else data[:max_size]

    return mutate
