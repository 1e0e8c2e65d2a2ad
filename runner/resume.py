"""Resuming a killed render: each finished window is checkpointed next to the output.

Layout (docs/runner.md, Resuming): `<output's folder>/.multitalk-resume/<request sha256>/`
holds per window `window-NNNNN.bin` (the data) and then `window-NNNNN.json` (its manifest,
written last, with the data's sha256). A window counts only when its manifest parses, names
this render (engine, runner version, size, rate, length, window) and the data matches its
checksum, so a torn or stale checkpoint is never used; the first one that does not count
ends the resumable run of windows.

The data keeps the window's frames as the yuv420p planes the encoder took, lossless: each
frame after a window's first as its difference from the one before (mod 256), zlib'd (most
pixels repeat, so this costs a quarter of compressing the frames themselves).
So a resumed render feeds x264 the same frames in the same order, and the final MP4 is the one an
uninterrupted render writes, not a concatenation of separately encoded segments (which would
restart rate control and GOPs at every window boundary).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import ValidationError

from multitalk.runner.encode import Planes
from multitalk.runner.errors import Retryable
from multitalk.runner.outputs import poster_frame
from multitalk.runner.request import ApiModel, RenderRequest, StorageSpec, canonical_hash, uri_scheme
from multitalk.runner.storage import S3Location, local_path, s3_client, s3_error

SCRATCH_DIR = ".multitalk-resume"  # next to the output; the lifecycle rule expires it (docs/runner.md)
FORMAT = 1
_LENGTH = 4  # bytes of each frame's length prefix in the data
ZLIB_LEVEL = 1  # differences are mostly zeros: level 1 already packs them 10-15x (lite, 480x480)
# Checkpoints are best-effort and written on the render's thread: against storage that stops
# answering (a brownout: no reset, no refusal) the default client (60 s x 4 attempts) held
# the render up for over 5 minutes per window (tests/runner/test_resume_outage.py).
SCRATCH_TIMEOUT_SECONDS = 15.0
SCRATCH_ATTEMPTS = 2


def scratch_uri(output_uri: str, request_sha256: str) -> str:
    """The scratch prefix of a render: in the output's folder, keyed by the request's hash."""
    folder = output_uri.rsplit("/", 1)[0] if "/" in output_uri else "."
    return f"{folder}/{SCRATCH_DIR}/{request_sha256}/"


def window_count(frames: int, window_frames: int) -> int:
    return -(-frames // window_frames)


class RenderIdentity(ApiModel):
    """What must match for a checkpoint to be reused (the request itself is the scratch key)."""

    request_sha256: str
    engine: str
    runner_version: str
    width: int
    height: int
    fps: int
    frames: int
    window_frames: int


class Section(ApiModel):
    offset: int
    size: int


class WindowManifest(ApiModel):
    kind: Literal["RenderCheckpoint"] = "RenderCheckpoint"
    format: int = FORMAT
    render: RenderIdentity
    window: int
    first_frame: int
    frames: int
    sha256: str  # of the whole data file
    size: int
    frame_data: Section  # length-prefixed zlib'd planes, one per frame
    state: Section  # Engine.window_state() after the window's last frame
    poster_png: Section | None = None  # the poster, when this window holds its frame


def data_name(window: int) -> str:
    return f"window-{window:05d}.bin"


def manifest_name(window: int) -> str:
    return f"window-{window:05d}.json"


def frame_chunk(planes: Planes, previous: Planes | None) -> bytes:
    """One frame of a window's data: its difference from the frame before (uint8 wraps: mod 256), zlib'd."""
    delta = planes if previous is None else planes - previous
    chunk = zlib.compress(np.ascontiguousarray(delta).tobytes(), ZLIB_LEVEL)
    return len(chunk).to_bytes(_LENGTH, "big") + chunk


# Compression overlaps the engine drawing the next frames (zlib and numpy release the GIL);
# one thread keeps the order, and at most PENDING_FRAMES raw frames wait for it.
_COMPRESSOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
PENDING_FRAMES = 8


@dataclass
class WindowRecorder:
    """One window's frames, compressed as they come (memory: the compressed window)."""

    window: int
    first_frame: int
    chunks: list[Future[bytes]] = field(default_factory=list)
    poster_png: bytes | None = None
    _previous: Planes | None = None

    def add(self, planes: Planes) -> None:
        """planes must not change afterwards (the encoder's conversion makes a new array per frame)."""
        self.chunks.append(_COMPRESSOR.submit(frame_chunk, planes, self._previous))
        self._previous = planes
        if len(self.chunks) > PENDING_FRAMES:
            self.chunks[-PENDING_FRAMES - 1].result()  # the compressor sets the pace

    def pack(self, render: RenderIdentity, state: bytes) -> tuple[bytes, WindowManifest]:
        """The data file and its manifest."""
        frame_data = b"".join(chunk.result() for chunk in self.chunks)
        parts = [frame_data, state, self.poster_png or b""]
        data = b"".join(parts)
        offsets = [0, len(frame_data), len(frame_data) + len(state)]
        manifest = WindowManifest(
            render=render,
            window=self.window,
            first_frame=self.first_frame,
            frames=len(self.chunks),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            frame_data=Section(offset=0, size=len(frame_data)),
            state=Section(offset=offsets[1], size=len(state)),
            poster_png=Section(offset=offsets[2], size=len(self.poster_png)) if self.poster_png else None,
        )
        return data, manifest


@dataclass(frozen=True)
class RestoredWindow:
    manifest: WindowManifest
    data: bytes
    shape: tuple[int, int]  # of each frame's planes

    @property
    def end(self) -> int:
        return self.manifest.first_frame + self.manifest.frames

    def section(self, s: Section) -> bytes:
        return self.data[s.offset : s.offset + s.size]

    @property
    def state(self) -> bytes:
        return self.section(self.manifest.state)

    @property
    def poster_png(self) -> bytes | None:
        return self.section(self.manifest.poster_png) if self.manifest.poster_png else None

    def planes(self) -> Iterator[Planes]:
        frames = self.section(self.manifest.frame_data)
        pos, previous = 0, None
        while pos < len(frames):
            size = int.from_bytes(frames[pos : pos + _LENGTH], "big")
            raw = zlib.decompress(frames[pos + _LENGTH : pos + _LENGTH + size])
            pos += _LENGTH + size
            delta = np.frombuffer(raw, dtype=np.uint8).reshape(self.shape)
            previous = delta.copy() if previous is None else previous + delta
            yield previous


def checked_window(
    manifest_bytes: bytes, data: bytes | None, render: RenderIdentity, window: int, first_frame: int
) -> RestoredWindow | str:
    """The window, or why it cannot be used (pure)."""
    try:
        manifest = WindowManifest.model_validate_json(manifest_bytes)
    except ValidationError as exc:
        return f"its manifest is unreadable ({exc.error_count()} problems)"
    if manifest.format != FORMAT or manifest.render != render:
        return "it belongs to another render (engine, runner version or video settings differ)"
    expected = min(render.window_frames, render.frames - first_frame)
    if manifest.window != window or manifest.first_frame != first_frame or manifest.frames != expected:
        return f"it covers frames {manifest.first_frame}+{manifest.frames}, expected {first_frame}+{expected}"
    if (first_frame <= poster_frame(render.frames) < first_frame + expected) != (manifest.poster_png is not None):
        return "its poster is missing or misplaced"
    if data is None:
        return "its data is missing"
    if len(data) != manifest.size or hashlib.sha256(data).hexdigest() != manifest.sha256:
        return "its data does not match the manifest's checksum"
    return RestoredWindow(manifest, data, (render.height * 3 // 2, render.width))


class Scratch(Protocol):
    """A folder of checkpoint files, local or on S3. Failures raise ScratchError."""

    uri: str

    def put(self, name: str, data: bytes) -> None: ...
    def get(self, name: str) -> bytes | None: ...  # None: absent
    def remove(self) -> None: ...


class ScratchError(Exception):
    """Reading or writing the scratch failed: a checkpoint is lost, the render is not."""


@dataclass
class LocalScratch:
    uri: str

    @property
    def path(self) -> Path:
        return local_path(self.uri)

    def put(self, name: str, data: bytes) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=self.path)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.path / name)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise ScratchError(f"cannot write {self.path / name}: {exc.strerror or exc}") from exc

    def get(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ScratchError(f"cannot read {self.path / name}: {exc.strerror or exc}") from exc

    def remove(self) -> None:
        try:
            shutil.rmtree(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ScratchError(f"cannot remove {self.path}: {exc.strerror or exc}") from exc
        with contextlib.suppress(OSError):  # the folder of all scratch, once no other render uses it
            self.path.parent.rmdir()


@dataclass
class S3Scratch:
    uri: str
    client: Any

    @property
    def loc(self) -> S3Location:
        return S3Location.parse(self.uri)

    def put(self, name: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.loc.bucket, Key=self.loc.key + name, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise ScratchError(f"cannot write {self.uri}{name}: {exc}") from exc

    def get(self, name: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.loc.bucket, Key=self.loc.key + name)["Body"].read()
            return body
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise ScratchError(f"cannot read {self.uri}{name}: {exc}") from exc
        except BotoCoreError as exc:
            raise ScratchError(f"cannot read {self.uri}{name}: {exc}") from exc

    def remove(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        loc = self.loc
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key)
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=loc.bucket, Delete={"Objects": keys, "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            raise ScratchError(f"cannot remove {self.uri}: {exc}") from exc


def open_scratch(output_uri: str, storage: StorageSpec, request_sha256: str) -> Scratch:
    uri = scratch_uri(output_uri, request_sha256)
    if uri_scheme(output_uri) == "s3":
        return S3Scratch(uri, s3_client(storage, read_timeout=SCRATCH_TIMEOUT_SECONDS, attempts=SCRATCH_ATTEMPTS))
    return LocalScratch(uri)


def remove_scratch(request: RenderRequest) -> str:
    """Remove the checkpoints of this request's render (`multitalk-runner clean-scratch`, which
    the operator runs when a TalkingVideo whose render did not finish is deleted); its URI.
    Storage that refuses is StorageRefused (exit 5), unreachable storage Retryable (exit 1)."""
    scratch = open_scratch(request.output.uri, request.storage, canonical_hash(request))
    try:
        scratch.remove()
    except ScratchError as exc:
        cause = exc.__cause__
        if isinstance(scratch, S3Scratch) and isinstance(cause, Exception):
            raise s3_error(cause, "output.uri", scratch.uri) from exc  # denied: 5, unreachable: 1
        raise Retryable(str(exc), "output.uri") from exc
    return scratch.uri


def warn(message: str) -> None:
    print(f"multitalk-runner: warning: {message}", file=sys.stderr, flush=True)


@dataclass
class Checkpoints:
    """The checkpoints of one render: restore the finished windows, then record new ones."""

    scratch: Scratch
    render: RenderIdentity
    _recorder: WindowRecorder = field(init=False)

    def __post_init__(self) -> None:
        self._recorder = WindowRecorder(0, 0)

    @property
    def windows_total(self) -> int:
        return window_count(self.render.frames, self.render.window_frames)

    def restore(self) -> Iterator[RestoredWindow]:
        """The windows from frame 0 on that can be used, one at a time (memory: one window)."""
        first = 0
        for window in range(self.windows_total):
            try:
                manifest = self.scratch.get(manifest_name(window))
                if manifest is None:
                    return
                data = self.scratch.get(data_name(window))
            except ScratchError as exc:
                warn(f"resuming stops before window {window}: {exc}")
                return
            checked = checked_window(manifest, data, self.render, window, first)
            if isinstance(checked, str):
                warn(f"checkpoint {self.scratch.uri}{manifest_name(window)} is not used: {checked}")
                return
            yield checked
            first = checked.end

    def start_at(self, window: int, first_frame: int) -> None:
        """Record from this window on (after the restored ones)."""
        self._recorder = WindowRecorder(window, first_frame)

    def add(
        self,
        planes: Planes,
        poster_png: bytes | None,
        state: Callable[[], bytes],
        between: Callable[[int], None] = lambda window: None,
    ) -> int | None:
        """Record the next frame; at a window's end write the window and return the windows done."""
        rec = self._recorder
        rec.add(planes)
        if poster_png is not None:
            rec.poster_png = poster_png
        end = rec.first_frame + len(rec.chunks)
        if len(rec.chunks) < self.render.window_frames and end < self.render.frames:
            return None
        self._write(rec, state(), lambda: between(rec.window))
        self._recorder = WindowRecorder(rec.window + 1, end)
        return rec.window + 1

    def _write(self, recorder: WindowRecorder, state: bytes, between: Callable[[], None]) -> None:
        """The data, then the manifest (a kill between the two leaves no usable window). A failure
        is a warning: the render goes on and later windows are still tried."""
        data, manifest = recorder.pack(self.render, state)
        try:
            self.scratch.put(data_name(recorder.window), data)
            between()
            self.scratch.put(manifest_name(recorder.window), (manifest.model_dump_json(by_alias=True) + "\n").encode())
        except ScratchError as exc:
            warn(f"window {recorder.window} was not checkpointed: {exc}")

    def remove(self) -> None:
        try:
            self.scratch.remove()
        except ScratchError as exc:
            warn(f"the checkpoints stay behind (the lifecycle rule expires them): {exc}")
