"""The multitalk engine's window_state(): what a streaming render resumes from (docs/runner.md, Resuming).

A runner checkpoint falls after `window_frames` output frames, while the engine is
draining the window it generated last. The state holds that window's tail as float32
frames (the next window's motion frames, and any frames not yet yielded: those become
uint8 exactly as in an uninterrupted render), the pipeline's WindowCarry (its RNG state,
index and start) and the output position. Layout: MAGIC, a 4-byte big-endian header
length, the JSON header, the tail's bytes, the RNG state's bytes.

A state is refused (StateError, a clear message) when it is not one, is of another
format version, or was made by a render with other settings (`fingerprint`: the request's
hash keys the checkpoints, but the engine's environment, e.g. MULTITALK_COLOR_MATCH or the
rank count, is not in the request).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from .pipeline import WindowCarry

MAGIC = b"MTSTATE\n"
VERSION = 1
_HEADER_LENGTH = 4


class StateError(ValueError):
    """A checkpointed state that cannot resume this render."""


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: int
    fingerprint: str
    yielded: int  # output frames before the state
    tail_first: int  # 25 fps index of the tail's first frame
    tail_shape: tuple[int, int, int, int]  # 3, n, H, W
    window: int | None  # the carry's; None: the tail ends the render
    start: int | None
    rng_bytes: int


@dataclass(frozen=True)
class StreamState:
    fingerprint: str
    yielded: int
    tail_first: int
    tail: torch.Tensor  # [3, n, H, W] float32, on the CPU: the last window's frames from tail_first on
    carry: WindowCarry | None  # its motion is the tail's last frames; None after the last window


def tail_bytes(frames: int, height: int, width: int) -> int:
    """Bytes of a state's tail: float32 RGB frames (the state's bulk; its header and RNG state are < 6 kB)."""
    return 4 * 3 * frames * height * width


def fingerprint(settings: dict[str, object]) -> str:
    """sha256 of the settings a render's frames depend on (JSON-able values)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def encode(state: StreamState) -> bytes:
    tail = state.tail.detach().to("cpu", torch.float32).contiguous()
    carry = state.carry
    rng = b"" if carry is None else carry.rng.to("cpu", torch.uint8).numpy().tobytes()
    header = _Header(
        version=VERSION,
        fingerprint=state.fingerprint,
        yielded=state.yielded,
        tail_first=state.tail_first,
        tail_shape=(int(tail.shape[0]), int(tail.shape[1]), int(tail.shape[2]), int(tail.shape[3])),
        window=None if carry is None else carry.window,
        start=None if carry is None else carry.start,
        rng_bytes=len(rng),
    ).model_dump_json()
    head = header.encode()
    return b"".join([MAGIC, len(head).to_bytes(_HEADER_LENGTH, "big"), head, tail.numpy().astype("<f4").tobytes(), rng])


def decode(data: bytes, expected_fingerprint: str, motion_frames: int, size: tuple[int, int]) -> StreamState:
    """The state in `data`; StateError says why it cannot be one of this render's."""
    if not data.startswith(MAGIC):
        raise StateError("it is not a multitalk streaming state")
    pos = len(MAGIC) + _HEADER_LENGTH
    header_size = int.from_bytes(data[len(MAGIC) : pos], "big")
    try:
        header = _Header.model_validate_json(data[pos : pos + header_size])
    except ValidationError as exc:
        raise StateError(f"its header is unreadable ({exc.error_count()} problems)") from None
    if header.version != VERSION:
        raise StateError(f"it has format version {header.version}, this runner reads {VERSION}")
    if header.fingerprint != expected_fingerprint:
        raise StateError("it was made with other engine settings (seed, steps, size, colour matching, ranks ...)")
    channels, count, height, width = header.tail_shape
    if (channels, height, width) != (3, *size) or count < motion_frames or header.yielded < 0:
        raise StateError(f"its tail of shape {header.tail_shape} is not {motion_frames}+ frames of 3 x {size}")
    if (header.window is None) != (header.start is None) or (header.window is None) != (header.rng_bytes == 0):
        raise StateError("its window bookkeeping is incomplete")
    if header.start is not None and header.start != header.tail_first + count - motion_frames:
        raise StateError(f"its next window starts at {header.start}, not on its motion frames")
    pos += header_size
    tail_size = tail_bytes(count, height, width)
    if len(data) != pos + tail_size + header.rng_bytes:
        raise StateError(f"it is {len(data)} bytes, its header describes {pos + tail_size + header.rng_bytes}")
    tail = torch.from_numpy(np.frombuffer(data, "<f4", tail_size // 4, pos).astype(np.float32))
    tail = tail.reshape(channels, count, height, width)
    carry = None
    if header.window is not None and header.start is not None:
        rng = torch.from_numpy(np.frombuffer(data, np.uint8, header.rng_bytes, pos + tail_size).copy())
        carry = WindowCarry(header.window, header.start, tail[:, -motion_frames:], rng)
    return StreamState(header.fingerprint, header.yielded, header.tail_first, tail, carry)
