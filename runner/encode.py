"""Streaming H.264 + AAC MP4 writer (PyAV).

Frames are encoded as they arrive and the sound track is fed alongside them (audio up to
the end of each video frame), so the muxer interleaves as it goes and memory stays flat
in the video's length. faststart moves the index to the front for progressive playback.
"""

from __future__ import annotations

import contextlib
import time
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, VideoReformatter

from multitalk.runner.engines.base import Audio, Image

AAC_FRAME = 1024  # samples per AAC frame
DEFAULT_PRESET = "veryfast"
DEFAULT_CRF = 20


class Mp4Writer:
    """Write frames one by one; close() finishes the file. Audio length decides nothing: the
    caller sizes frames = round(duration * fps), so both tracks end within one frame."""

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
    ) -> None:
        self.path = path
        self.width, self.height, self.fps = width, height, fps
        self.audio = audio
        self.audio_rate = audio_rate
        self.frames_written = 0
        self.encode_seconds = 0.0
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
        # Tag BT.709, limited range (what the conversion below produces) so players agree on colours.
        cc = video.codec_context
        cc.colorspace, cc.color_range = Colorspace.ITU709, ColorRange.MPEG
        cc.color_primaries, cc.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        self._video = video
        self._to_yuv = VideoReformatter()
        sound = self._container.add_stream("aac", rate=audio_rate)
        sound.layout = "mono"
        sound.bit_rate = 96_000
        sound.options = {"aac_coder": "fast"}  # speech at 96 kb/s: the default coder costs 3x for no audible gain
        sound.codec_context.time_base = Fraction(1, audio_rate)
        self._sound = sound

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            with contextlib.suppress(Exception):  # the original error matters, not the trailer's
                self._container.close()  # the caller discards the partial file

    def write(self, rgb: Image) -> None:
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"engine frame is {rgb.shape} {rgb.dtype}, expected ({self.height}, {self.width}, 3) uint8"
            )
        start = time.perf_counter()
        # One reformatter for the whole video (a per-frame one rebuilds the swscale context each
        # time and doubles the conversion cost); FAST_BILINEAR only affects the 2x2 chroma averaging.
        frame = self._to_yuv.reformat(
            av.VideoFrame.from_ndarray(rgb, format="rgb24"),
            format="yuv420p",
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
            interpolation="FAST_BILINEAR",
        )
        frame.pts = self.frames_written
        frame.time_base = self._video.codec_context.time_base
        self._container.mux(self._video.encode(frame))
        self.frames_written += 1
        self._feed_audio(round(self.frames_written / self.fps * self.audio_rate))
        self.encode_seconds += time.perf_counter() - start

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
        start = time.perf_counter()
        self._feed_audio(len(self.audio))
        self._container.mux(self._video.encode(None))
        self._container.mux(self._sound.encode(None))
        self._container.close()
        self.encode_seconds += time.perf_counter() - start
