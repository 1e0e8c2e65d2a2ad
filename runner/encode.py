"""Streaming H.264 + AAC MP4 writer (PyAV).

Frames are encoded as they arrive and the sound track is fed alongside them (audio up to
the end of each video frame), so the muxer interleaves as it goes and memory stays flat
in the video's length. faststart moves the index to the front for progressive playback.

The caller's thread only converts each frame to yuv420p (cheap, and afterwards the engine
may reuse its buffer); x264, AAC and the muxer run on a writer thread fed through a short
bounded queue, so encoding overlaps the engine drawing the next frames (PyAV and OpenCV
release the GIL) while at most QUEUE_FRAMES converted frames wait in memory.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path
from types import ModuleType, TracebackType

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, VideoReformatter

from multitalk.runner.engines.base import Audio, Image

AAC_FRAME = 1024  # samples per AAC frame
DEFAULT_PRESET = "veryfast"
DEFAULT_CRF = 20
QUEUE_FRAMES = 4  # converted frames waiting for the writer thread (bounds memory)

Planes = npt.NDArray[np.uint8]  # one yuv420p frame: (H * 3 / 2) x W, the Y plane then U then V


def _opencv() -> ModuleType | None:
    """OpenCV when installed (the lite extra and the runner image have it), else None."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


class Mp4Writer:
    """Write frames one by one; close() finishes the file. Audio length decides nothing: the
    caller sizes frames = round(duration * fps), so both tracks end within one frame.

    Colour: BT.601 matrix, limited range, tagged as such (BT.709 primaries and transfer: the
    pictures are sRGB). OpenCV's RGB -> I420 conversion computes exactly that and costs a
    tenth of swscale's rgb24 path (0.2 vs 1.5 ms at 480x480, 0.5 vs 6 ms at 1280x720);
    swscale with the same matrix is the fallback without OpenCV.
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int,
        audio: Audio,
        audio_rate: int,
        preset: str = DEFAULT_PRESET,
        crf: int = DEFAULT_CRF,
        background: bool = True,
    ) -> None:
        self.path = path
        self.width, self.height, self.fps = width, height, fps
        self.audio = audio
        self.audio_rate = audio_rate
        self.frames_written = 0
        self._convert_seconds = 0.0  # in the caller's thread
        self._writer_seconds = 0.0  # in the writer thread (overlaps the caller's work)
        self._audio_pos = 0
        self._container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        video = self._container.add_stream("libx264", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        video.options = {"preset": preset, "crf": str(crf)}
        # Frame threads (FFmpeg's own default for x264; PyAV picks slices): x264 encodes while the
        # engine draws the next frame, instead of every frame waiting for all its slices.
        video.codec_context.thread_type = "FRAME"
        cc = video.codec_context
        cc.colorspace, cc.color_range = Colorspace.ITU601, ColorRange.MPEG
        cc.color_primaries, cc.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        self._video = video
        self._cv2 = _opencv()
        self._to_yuv = VideoReformatter()
        sound = self._container.add_stream("aac", rate=audio_rate)
        sound.layout = "mono"
        sound.bit_rate = 96_000
        sound.options = {"aac_coder": "fast"}  # speech at 96 kb/s: the default coder costs 3x for no audible gain
        sound.codec_context.time_base = Fraction(1, audio_rate)
        self._sound = sound
        self._queue: queue.Queue[av.VideoFrame | None] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._drain, name="mp4-writer", daemon=True)
            self._thread.start()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._stop()
            with contextlib.suppress(Exception):  # the original error matters, not the trailer's
                self._container.close()  # the caller discards the partial file

    def write(self, rgb: Image) -> None:
        self.write_planes(self.planes(rgb))

    def planes(self, rgb: Image) -> Planes:
        """An RGB frame as the yuv420p planes the encoder takes ((H * 3 / 2) x W, Y then U then V):
        what a resume checkpoint keeps, so a resumed render feeds x264 the very same input."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"engine frame is {rgb.shape} {rgb.dtype}, expected ({self.height}, {self.width}, 3) uint8"
            )
        start = time.perf_counter()
        planes = self._yuv420(rgb)
        self._convert_seconds += time.perf_counter() - start
        return planes

    def write_planes(self, planes: Planes) -> None:
        if planes.shape != (self.height * 3 // 2, self.width) or planes.dtype != np.uint8:
            raise ValueError(
                f"yuv420p planes are {planes.shape} {planes.dtype}, expected {self.height * 3 // 2}x{self.width}"
            )
        self._raise_writer_error()
        start = time.perf_counter()
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = self.frames_written
        frame.time_base = self._video.codec_context.time_base
        self.frames_written += 1
        self._convert_seconds += time.perf_counter() - start
        if self._thread is None:
            self._encode(frame)
        else:
            self._queue.put(frame)  # blocks while QUEUE_FRAMES wait: the encoder sets the pace

    def _yuv420(self, rgb: Image) -> Planes:
        if self._cv2 is not None:
            planes: Planes = self._cv2.cvtColor(np.ascontiguousarray(rgb), self._cv2.COLOR_RGB2YUV_I420)
            return planes
        # One reformatter for the whole video (a per-frame one rebuilds the swscale context each
        # time and doubles the conversion cost); FAST_BILINEAR only affects the 2x2 chroma averaging.
        frame = self._to_yuv.reformat(
            av.VideoFrame.from_ndarray(rgb, format="rgb24"),
            format="yuv420p",
            dst_colorspace=Colorspace.ITU601,
            dst_color_range=ColorRange.MPEG,
            interpolation="FAST_BILINEAR",
        )
        return np.asarray(frame.to_ndarray(), dtype=np.uint8)

    def _encode(self, frame: av.VideoFrame) -> None:
        start = time.perf_counter()
        self._container.mux(self._video.encode(frame))
        assert frame.pts is not None
        self._feed_audio(round((frame.pts + 1) / self.fps * self.audio_rate))
        self._writer_seconds += time.perf_counter() - start

    def _drain(self) -> None:
        """Writer thread: encode queued frames until None; after an error, keep draining (so
        write() never blocks forever) and leave the error for the caller's thread."""
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._encode(frame)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"encoding failed: {self._error}") from self._error

    def _stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _feed_audio(self, until: int) -> None:
        until = min(until, len(self.audio))
        while self._audio_pos + AAC_FRAME <= until or (until == len(self.audio) and self._audio_pos < until):
            end = min(self._audio_pos + AAC_FRAME, len(self.audio))
            chunk = np.ascontiguousarray(self.audio[self._audio_pos : end]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = self.audio_rate
            frame.pts = self._audio_pos
            frame.time_base = self._sound.codec_context.time_base
            self._container.mux(self._sound.encode(frame))
            self._audio_pos = end

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop()
        self._raise_writer_error()
        start = time.perf_counter()
        self._feed_audio(len(self.audio))
        self._container.mux(self._video.encode(None))
        self._container.mux(self._sound.encode(None))
        self._container.close()
        self._convert_seconds += time.perf_counter() - start

    @property
    def encode_seconds(self) -> float:
        """Time spent converting, encoding and muxing (partly in parallel with the engine)."""
        return self._convert_seconds + self._writer_seconds
