"""Source-video decoding for dubbing: bounds checked from the header, then frames on the output grid.

A dubbing request gives `sourceVideo` instead of `image`. The output keeps the source's
frames and motion, so every output frame i is the source frame shown at time i / fps:
- variable frame rate is resampled by timestamps (the last source frame shown at that time,
  as a player does), never by counting frames;
- the display matrix (phone videos are stored sideways with a rotation tag) is applied, as a
  player does, before fitting;
- each frame is scaled to cover video.width x video.height and centre-cropped, as a portrait is;
- speech longer than the source holds its last frame, as MeiGen's InfiniteTalk does.

Frames are decoded on demand and forwards only, so memory stays flat in the video's length;
asking for an earlier frame (a resumed render) reopens the stream. Every PyAV call on the
user's bytes runs under errors.decoding: a damaged file is InvalidInput (exit 3) naming
the field, never a retry.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from multitalk.runner.engines.base import Image
from multitalk.runner.errors import InvalidInput, decoding

FIELD = "sourceVideo"
# 4096 x 2304 (DCI 4K and UHD fit): larger frames are refused from the header. 4K sources are
# accepted and scaled down to the output size on the fly.
MAX_SOURCE_PIXELS = 4096 * 2304
MIN_SOURCE_SIDE = 16
# Frames per second of the source beyond which a file is not a video to dub (or its header lies);
# bounds the frames decoded per output frame.
MAX_SOURCE_FPS = 240
FORMATS_HINT = "a video file (mp4, mov, mkv, webm)"


@dataclass(frozen=True)
class SourceInfo:
    """What the header says, before any frame is decoded."""

    width: int  # stored size (before the display rotation)
    height: int
    rotation: int  # degrees counter-clockwise the player turns the stored frames: 0, 90, 180, 270
    seconds: float | None  # declared duration, when the container has one
    codec: str

    @property
    def upright_size(self) -> tuple[int, int]:
        """Width and height as shown (speaker boxes are in these pixels)."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def _rotation(stream: av.video.stream.VideoStream, frame: av.VideoFrame | None = None) -> int:
    """The display rotation in degrees counter-clockwise, snapped to a quarter turn."""
    degrees = 0.0
    if frame is not None:
        degrees = float(frame.rotation or 0)
    else:
        tag = stream.metadata.get("rotate")
        if tag is not None:
            try:
                degrees = -float(tag)  # the old tag is clockwise
            except ValueError:
                degrees = 0.0
    return round(degrees / 90.0) % 4 * 90


def _open(data: bytes) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    if not data:
        raise InvalidInput(f"is empty (0 bytes); expected {FORMATS_HINT}", FIELD)
    with decoding(FIELD, f"is not a readable video file; expected {FORMATS_HINT}"):
        container = av.open(io.BytesIO(data), mode="r")
    if not container.streams.video:
        container.close()
        raise InvalidInput(
            f"has no video stream (an audio-only or image file?); expected {FORMATS_HINT}. "
            "To animate a still picture give it as image instead",
            FIELD,
        )
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise InvalidInput("has a video stream in a codec FFmpeg cannot decode", FIELD)
    stream.thread_type = "AUTO"
    return container, stream


def probe(data: bytes) -> SourceInfo:
    """Header facts of the source video, with its bounds checked; decodes one frame for the rotation."""
    container, stream = _open(data)
    with decoding(FIELD, "could not be read"), container:
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width * height > MAX_SOURCE_PIXELS:
            raise InvalidInput(
                f"is {width}x{height} pixels; at most {MAX_SOURCE_PIXELS / 1e6:.1f} megapixels (4K) are accepted",
                FIELD,
            )
        if min(width, height) < MIN_SOURCE_SIDE:
            raise InvalidInput(f"is {width}x{height} pixels; each side must be at least {MIN_SOURCE_SIDE}", FIELD)
        rate = stream.average_rate or stream.guessed_rate
        if rate is not None and float(rate) > MAX_SOURCE_FPS:
            raise InvalidInput(f"declares {float(rate):.0f} frames per second; at most {MAX_SOURCE_FPS}", FIELD)
        seconds = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        with decoding(FIELD, f"could not be decoded ({ctx.name})"):
            first = next(container.decode(stream), None)
        if first is None:
            raise InvalidInput("has a video stream without a single decodable frame", FIELD)
        return SourceInfo(width, height, _rotation(stream, first), seconds, str(ctx.name))


def _upright(frame: av.VideoFrame) -> PILImage.Image:
    image: PILImage.Image = frame.to_image()  # type: ignore[no-untyped-call]  # RGB; PyAV leaves it untyped
    rotation = round(float(frame.rotation or 0) / 90.0) % 4 * 90
    # PIL rotates counter-clockwise for positive angles, as the display matrix does.
    return image.rotate(rotation, expand=True) if rotation else image


class SourceVideo:
    """The source video on the output's frame grid: frame(i) is what a player shows at i / fps,
    fitted to width x height; past the source's end, its last frame."""

    def __init__(self, data: bytes, width: int, height: int, fps: int) -> None:
        self.info = probe(data)
        self._data = data
        self._size = (width, height)
        self._fps = fps
        self._frames: Iterator[tuple[float, av.VideoFrame]] | None = None
        self._container: av.container.InputContainer | None = None
        self._index = -1  # output index of _current
        self._current: Image | None = None
        self._pending: tuple[float, av.VideoFrame] | None = None  # the next source frame, decoded
        self._origin: float | None = None  # time of the first frame: output frame 0
        self.exhausted = False  # every source frame has been shown: later frames hold the last one
        self.decoded = 0  # source frames decoded (for tests and the result's notes)

    def _restart(self) -> None:
        self.close()
        container, stream = _open(self._data)
        self._container = container
        base = stream.time_base or Fraction(1, 90_000)

        def timed() -> Iterator[tuple[float, av.VideoFrame]]:
            with decoding(FIELD, f"could not be decoded ({stream.codec_context.name})"):
                for frame in container.decode(stream):
                    if frame.pts is None and frame.time is None:
                        continue
                    yield (float(frame.time) if frame.time is not None else float(frame.pts * base)), frame

        self._frames = timed()
        self._index, self._current, self._pending, self._origin = -1, None, None, None

    def _next_source(self) -> tuple[float, av.VideoFrame] | None:
        assert self._frames is not None
        item = next(self._frames, None)
        if item is not None:
            self.decoded += 1
        return item

    def frame(self, index: int) -> Image:
        """Output frame `index` (0-based): H x W x 3 uint8 RGB."""
        if index < 0:
            raise IndexError(index)
        if self._frames is None or index < self._index:
            self._restart()
        if index == self._index and self._current is not None:
            return self._current
        if self._pending is None and self._current is None:
            self._pending = self._next_source()
            if self._pending is None:
                raise InvalidInput("has a video stream without a single decodable frame", FIELD)
            self._origin = self._pending[0]
        assert self._origin is not None
        # Half a frame of slack: timestamps rounded to the container's time base still land on their frame.
        until = self._origin + (index + 0.5) / self._fps
        shown: av.VideoFrame | None = None
        while self._pending is not None and self._pending[0] <= until:
            shown = self._pending[1]
            self._pending = self._next_source()
        self.exhausted = self._pending is None
        if shown is not None:
            self._current = self._fit(shown)
        assert self._current is not None  # the first frame is shown at time 0
        self._index = index
        return self._current

    def frames(self, start: int, stop: int) -> Iterator[Image]:
        for index in range(start, stop):
            yield self.frame(index)

    def _fit(self, frame: av.VideoFrame) -> Image:
        with decoding(FIELD, "has a frame that could not be converted"):
            upright = _upright(frame)
        fitted = ImageOps.fit(upright, self._size, method=PILImage.Resampling.BILINEAR, centering=(0.5, 0.5))
        return np.asarray(fitted, dtype=np.uint8).copy()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._frames = None
