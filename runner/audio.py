"""Speech decoding and timeline assembly.

Any container/codec PyAV (FFmpeg) can read goes in; two versions come out per speaker:
mono float32 at 16 kHz for the engines, and mono float32 at the muxing rate (the first
speaker's own rate when AAC supports it) for the video's sound track, so the video carries
the speech at its original quality rather than the engines' 16 kHz copy.

Every PyAV call on the user's bytes runs under errors.decoding: whatever FFmpeg or PyAV
raise there (FFmpegError, a ValueError from a malformed frame ...) is InvalidInput
(exit 3) naming the field, never a retry.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE, Audio
from multitalk.runner.errors import InvalidInput, decoding

# Sample rates the AAC encoder accepts; anything else is resampled to 48 kHz for muxing.
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
SILENCE_PEAK = 10 ** (-60 / 20)  # below -60 dBFS everywhere: no speech to animate
# Sample rates of speech: telephone (8 kHz) up to studio (384 kHz). Outside, the header is
# garbage or the file is not speech, and resampling it could cost unbounded memory per frame.
MIN_SOURCE_RATE = 8_000
MAX_SOURCE_RATE = 384_000


@dataclass(frozen=True)
class DecodedSpeech:
    """One speaker's speech, mono float32."""

    engine: Audio  # at ENGINE_SAMPLE_RATE
    mux: Audio  # at mux_rate
    mux_rate: int
    source_rate: int
    source_channels: int
    codec: str

    @property
    def seconds(self) -> float:
        return len(self.engine) / ENGINE_SAMPLE_RATE


@dataclass(frozen=True)
class Timeline:
    """All speakers placed on the video's timeline (audioMode applied, durationSeconds applied)."""

    speech: tuple[Audio, ...]  # per speaker at 16 kHz, each as long as the video
    mix: Audio  # 16 kHz mix for engines
    mux: Audio  # mix at mux_rate for the sound track
    mux_rate: int
    duration_seconds: float


def mux_rate_for(source_rate: int) -> int:
    return source_rate if source_rate in AAC_RATES else 48_000


def decode_speech(data: bytes, field: str, max_seconds: float, mux_rate: int | None = None) -> DecodedSpeech:
    """Decode one speech file; the length is bounded before and during decoding."""
    if not data:
        raise InvalidInput("is empty (0 bytes); expected an audio file (wav, mp3, m4a, ogg, flac)", field)
    with decoding(field, "is not a readable audio file (wav, mp3, m4a, ogg, flac)"):
        container = av.open(io.BytesIO(data), mode="r")
    with decoding(field, "could not be read"), container:
        if not container.streams.audio:
            raise InvalidInput("has no audio stream; expected speech (wav, mp3, m4a, ogg, flac)", field)
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise InvalidInput("has an audio stream in a codec FFmpeg cannot decode", field)
        codec = stream.codec_context.name
        source_rate = int(stream.codec_context.sample_rate or 0)
        if not MIN_SOURCE_RATE <= source_rate <= MAX_SOURCE_RATE:
            raise InvalidInput(
                f"has a sample rate of {source_rate} Hz; speech needs {MIN_SOURCE_RATE}..{MAX_SOURCE_RATE} Hz",
                field,
            )
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds + 0.05:
            raise InvalidInput(
                f"is {declared:.1f} s long; video.maxDurationSeconds allows at most {max_seconds:g} s", field
            )
        rate = mux_rate if mux_rate is not None else mux_rate_for(source_rate)
        limit = int((max_seconds + 0.05) * ENGINE_SAMPLE_RATE)
        with decoding(field, f"could not be decoded ({codec})"):
            engine_parts, mux_parts = _decode_stream(container, stream, rate, limit, max_seconds, field)
        channels = int(stream.codec_context.channels or 1)
    engine = _concat(engine_parts)
    mux = _concat(mux_parts)
    if len(engine) < ENGINE_SAMPLE_RATE // 10:
        raise InvalidInput(f"contains {len(engine) / ENGINE_SAMPLE_RATE:.2f} s of audio; need at least 0.1 s", field)
    if len(engine) > limit:
        raise InvalidInput(f"is longer than video.maxDurationSeconds allows ({max_seconds:g} s)", field)
    if not np.isfinite(engine).all():
        raise InvalidInput("contains invalid (NaN or infinite) samples", field)
    if float(np.max(np.abs(engine))) < SILENCE_PEAK:
        raise InvalidInput("is silent (peak below -60 dBFS); there is no speech to animate", field)
    return DecodedSpeech(
        engine=engine, mux=mux, mux_rate=rate, source_rate=source_rate, source_channels=channels, codec=codec
    )


class _ToMono:
    """Resampling to mono float32 at one rate, following a stream whose frames change format,
    layout or rate mid-stream (each MP3 frame carries its own channel mode; HE-AAC with
    parametric stereo turns stereo after its first frames): a resampler takes one setup only."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.parts: list[npt.NDArray[np.float32]] = []
        self.samples = 0
        self._setup: tuple[str, str, int] | None = None
        self._resampler: av.AudioResampler | None = None

    def push(self, frame: av.AudioFrame) -> None:
        setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        if setup != self._setup:
            self.flush()
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            self._setup = setup
        assert self._resampler is not None
        self._take(self._resampler.resample(frame))

    def flush(self) -> None:
        if self._resampler is not None:
            self._take(self._resampler.resample(None))
            self._resampler = None

    def _take(self, frames: list[av.AudioFrame]) -> None:
        for out in frames:
            self.parts.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
            self.samples += out.samples


def _decode_stream(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    mux_rate: int,
    limit: int,
    max_seconds: float,
    field: str,
) -> tuple[list[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]]]:
    """Mono float32 pieces at 16 kHz and at mux_rate; stops as soon as more than limit samples came out."""
    to_engine, to_mux = _ToMono(ENGINE_SAMPLE_RATE), _ToMono(mux_rate)
    for frame in container.decode(stream):
        frame.pts = None  # resample as one continuous signal even if timestamps jump
        to_engine.push(frame)
        to_mux.push(frame)
        if to_engine.samples > limit:  # no trustworthy header length: stop as soon as we are over
            raise InvalidInput(f"is longer than video.maxDurationSeconds allows ({max_seconds:g} s)", field)
    to_engine.flush()
    to_mux.flush()
    return to_engine.parts, to_mux.parts


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _concat(parts: list[npt.NDArray[np.float32]]) -> Audio:
    if not parts:
        return np.zeros(0, dtype=np.float32)
    out: Audio = np.concatenate(parts)
    parts.clear()  # the pieces can go before the clip; long speech stays at one copy
    np.clip(out, -1.0, 1.0, out=out)
    return out


def build_timeline(
    speakers: Sequence[DecodedSpeech], mode: str, duration_seconds: float | None, max_seconds: float
) -> Timeline:
    """Place speakers on one timeline: sequential = one after the other, simultaneous = overlaid.

    durationSeconds, when given, trims or pads with silence; otherwise the video is exactly
    as long as the speech.
    """
    if not speakers:
        raise InvalidInput("need at least one speaker", "speakers")
    mux_rate = speakers[0].mux_rate
    eng = [s.engine for s in speakers]
    mux = [s.mux for s in speakers]
    if mode == "sequential":
        eng_offsets = np.cumsum([0, *[len(a) for a in eng[:-1]]])
        mux_offsets = np.cumsum([0, *[len(a) for a in mux[:-1]]])
    else:
        eng_offsets = np.zeros(len(eng), dtype=np.int64)
        mux_offsets = np.zeros(len(mux), dtype=np.int64)
    eng_len = max(int(o) + len(a) for o, a in zip(eng_offsets, eng, strict=True))
    natural = eng_len / ENGINE_SAMPLE_RATE
    if duration_seconds is None and natural > max_seconds + 0.05:
        raise InvalidInput(
            f"speech on the timeline ({mode}) is {natural:.1f} s; at most {max_seconds:g} s allowed",
            "video.maxDurationSeconds",
        )
    duration = duration_seconds if duration_seconds is not None else natural
    eng_total = round(duration * ENGINE_SAMPLE_RATE)
    mux_total = round(duration * mux_rate)
    placed = tuple(_place(a, int(o), eng_total) for a, o in zip(eng, eng_offsets, strict=True))
    mux_placed = [_place(a, int(o), mux_total) for a, o in zip(mux, mux_offsets, strict=True)]
    return Timeline(
        speech=placed,
        mix=_mix(list(placed)),
        mux=_mix(mux_placed),
        mux_rate=mux_rate,
        duration_seconds=duration,
    )


def _place(audio: Audio, offset: int, total: int) -> Audio:
    if offset == 0 and len(audio) == total:
        return audio  # already in place (one speaker, natural length): no second copy of long speech
    out = np.zeros(total, dtype=np.float32)
    if offset < total:
        n = min(len(audio), total - offset)
        out[offset : offset + n] = audio[:n]
    return out


def _mix(tracks: list[Audio]) -> Audio:
    if len(tracks) == 1:
        return tracks[0]
    mixed: Audio = np.sum(tracks, axis=0, dtype=np.float32)
    peak = float(np.max(np.abs(mixed))) if len(mixed) else 0.0
    # Overlaid voices can clip; scale down rather than distort.
    if peak > 1.0:
        mixed = (mixed / peak).astype(np.float32)
    return mixed
