"""Energy and spectral features of speech sampled at the video's frame times (language independent).

Three cues that hold for speech in any language:
- loudness: the jaw follows the voice's energy and rests in silence;
- openness: the jaw's opening tracks the first formant (F1 rises as the jaw drops: about
  300 Hz for i/u, 700-850 Hz for a), measured as the share of the 80-1100 Hz energy that lies in
  450-1100 Hz;
- closure: a dip between louder stretches of speech without frication (a stop's closure or a
  nasal murmur), or the quiet just before or after speech, where lips meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d

FloatArray = npt.NDArray[np.float32]

_WINDOW = 1024  # 64 ms at 16 kHz: spans a 25 fps frame and its neighbours' halves
_CHUNK = 1024  # frames analysed at once, so memory stays flat in the audio's length

_SIBILANT_HZ = 4000.0  # sibilance: share of 80-8000 Hz energy above this
_F1_BAND_HZ = (450.0, 1100.0)  # openness: share of 80-1100 Hz energy in this band
_OPENNESS_SHARE = (0.3, 0.8)  # F1 share: close vowel (i, u: ~0.05) .. open vowel (a: ~0.85)

# Closures are short (a P is 40-100 ms): they are found on 10 ms steps with 25 ms windows.
_STEP_SECONDS = 0.01
_SHORT_WINDOW_SECONDS = 0.025
_FLANK_SECONDS = 0.12  # a closure is quieter than the speech beside it within this
_DIP_DB = (6.0, 14.0)  # depth under the flanking speech: no closure .. a full one
_HISS_HZ = 3000.0
_HISS_SHARE = (0.25, 0.5)  # share of energy above 3 kHz: a closure .. frication (S, F, SH: lips open)
_SPEECH = (0.25, 0.45)  # normalised level: not yet speech .. speech
_QUIET = (0.2, 0.3)  # normalised level: silence .. audible (the frication test needs sound)


@dataclass(frozen=True)
class SpeechFeatures:
    """Per video frame, each 0..1: loudness (0 = silence), sibilance (share of energy above
    4 kHz), openness (F1 cue, 0 = close vowel or no voice) and closure (over the frame's
    exposure: lips may meet)."""

    loudness: FloatArray
    sibilance: FloatArray
    openness: FloatArray
    closure: FloatArray


def _smoothstep(lo: float, hi: float, x: npt.NDArray[np.floating[Any]]) -> FloatArray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def frame_features(audio: npt.NDArray[np.float32], sample_rate: int, fps: float, frames: int) -> SpeechFeatures:
    """Loudness, sibilance and openness at each frame's centre, closure over each frame's exposure.

    Loudness is the RMS level in dBFS mapped linearly from a floor (45 dB under the loud speech
    level, at least -60 dBFS) to the 95th percentile of the level, so quiet and loud recordings
    move the mouth alike.
    """
    centers = ((np.arange(frames) + 0.5) * sample_rate / fps).astype(np.int64)
    level, (sibilance, f1) = _spectra(
        audio, sample_rate, centers, _WINDOW, [((_SIBILANT_HZ, 8000.0), (80.0, 8000.0)), (_F1_BAND_HZ, (80.0, 1100.0))]
    )
    top, floor = _level_range(level)
    loudness = _normalise(level, top, floor)
    openness = _smoothstep(*_OPENNESS_SHARE, f1) * _smoothstep(*_QUIET, loudness)
    closure = _frame_max(closure_track(audio, sample_rate, top, floor), 1 / _STEP_SECONDS, fps, frames)
    return SpeechFeatures(
        loudness=loudness,
        sibilance=np.clip(sibilance, 0.0, 1.0).astype(np.float32),
        openness=openness.astype(np.float32),
        closure=closure,
    )


def closure_track(audio: npt.NDArray[np.float32], sample_rate: int, top: float, floor: float) -> FloatArray:
    """Closure strength 0..1 every 10 ms.

    Inside speech: how far the level dips under the quieter of the loudest speech on each side
    (so both sides must be speech), unless the dip is frication. At the edges of speech: the
    quiet within the flank before speech starts or after it stops (lips close before a word
    and after it, as they do in the pause around an initial or final M/B/P).
    """
    step = round(_STEP_SECONDS * sample_rate)
    centers = np.arange(0, len(audio), step, dtype=np.int64) + step // 2
    level, (hiss,) = _spectra(
        audio, sample_rate, centers, round(_SHORT_WINDOW_SECONDS * sample_rate), [((_HISS_HZ, 8000.0), (80.0, 8000.0))]
    )
    if level.size == 0:
        return level
    flank = round(_FLANK_SECONDS / _STEP_SECONDS)
    left = maximum_filter1d(level, flank + 1, origin=flank // 2, mode="nearest")  # max over [t - flank, t]
    right = maximum_filter1d(level, flank + 1, origin=-(flank // 2), mode="nearest")  # max over [t, t + flank]
    here = _normalise(level, top, floor)
    inside = _smoothstep(*_DIP_DB, np.minimum(left, right) - level) * _smoothstep(
        *_SPEECH, _normalise(np.minimum(left, right), top, floor)
    )
    edge = (1 - _smoothstep(*_QUIET, here)) * _smoothstep(*_SPEECH, _normalise(np.maximum(left, right), top, floor))
    frication = _smoothstep(*_HISS_SHARE, hiss) * _smoothstep(*_QUIET, here)
    closure: FloatArray = (np.maximum(inside, edge) * (1 - frication)).astype(np.float32)
    return closure


def _spectra(
    audio: npt.NDArray[np.float32],
    rate: int,
    centers: npt.NDArray[np.int64],
    size: int,
    shares: list[tuple[tuple[float, float], tuple[float, float]]],
) -> tuple[FloatArray, list[FloatArray]]:
    """Level in dBFS in windows around centers, and for each (band, of) pair the share of the
    energy in `of` that lies in `band` (Hz)."""
    half = size // 2
    padded = np.pad(audio.astype(np.float32), (half, half))
    window = np.hanning(size).astype(np.float32)
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    masks = [((freqs >= b[0]) & (freqs < b[1]), (freqs >= o[0]) & (freqs < o[1])) for b, o in shares]
    level = np.empty(len(centers), dtype=np.float32)
    out = [np.empty(len(centers), dtype=np.float32) for _ in shares]
    offsets = np.arange(size) - half
    for start in range(0, len(centers), _CHUNK):
        idx = np.clip(centers[start : start + _CHUNK, None] + half + offsets[None, :], 0, len(padded) - 1)
        raw = padded[idx]
        power = np.abs(np.fft.rfft(raw * window, axis=1)) ** 2
        level[start : start + _CHUNK] = 10 * np.log10(np.mean(raw * raw, axis=1) + 1e-10)  # dBFS
        for (band, of), share in zip(masks, out, strict=True):
            share[start : start + _CHUNK] = power[:, band].sum(axis=1) / (power[:, of].sum(axis=1) + 1e-12)
    return level, out


def _level_range(level: FloatArray) -> tuple[float, float]:
    """The loud speech level (95th percentile) and the floor 45 dB under it (never under -60 dBFS:
    hiss is not speech)."""
    if level.size == 0:
        return 0.0, 0.0
    top = float(np.percentile(level, 95))
    return top, max(top - 45.0, -60.0)


def _normalise(level: FloatArray, top: float, floor: float) -> FloatArray:
    if level.size == 0 or top <= floor + 1e-3:
        return np.zeros_like(level)
    return np.clip((level - floor) / (top - floor), 0.0, 1.0).astype(np.float32)


def _frame_max(values: FloatArray, rate: float, fps: float, frames: int) -> FloatArray:
    """The largest value inside each video frame's exposure [i / fps, (i + 1) / fps)."""
    out = np.zeros(frames, dtype=np.float32)
    if values.size == 0:
        return out
    edges = np.minimum(np.round(np.arange(frames + 1) * rate / fps).astype(np.int64), len(values))
    for i in range(frames):
        lo, hi = edges[i], max(edges[i + 1], edges[i] + 1)
        if lo < len(values):
            out[i] = values[lo:hi].max()
    return out
