"""Energy and spectral features of speech sampled at the video's frame times (language independent)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

_WINDOW = 1024  # 64 ms at 16 kHz: spans a 25 fps frame and its neighbours' halves
_CHUNK = 1024  # frames analysed at once, so memory stays flat in the audio's length


@dataclass(frozen=True)
class SpeechFeatures:
    """Per video frame: loudness 0..1 (0 = silence) and sibilance 0..1 (share of energy above 4 kHz)."""

    loudness: FloatArray
    sibilance: FloatArray


def frame_features(audio: npt.NDArray[np.float32], sample_rate: int, fps: float, frames: int) -> SpeechFeatures:
    """Loudness and sibilance at each frame's centre.

    Loudness is the RMS level in dBFS mapped linearly from a floor (45 dB under the loud speech
    level, at least -60 dBFS) to the 95th percentile of the level, so quiet and loud recordings
    move the mouth alike.
    """
    centers = ((np.arange(frames) + 0.5) * sample_rate / fps).astype(np.int64)
    padded = np.pad(audio.astype(np.float32), (_WINDOW // 2, _WINDOW // 2))
    window = np.hanning(_WINDOW).astype(np.float32)
    freqs = np.fft.rfftfreq(_WINDOW, 1.0 / sample_rate)
    high = freqs >= 4000.0
    band = (freqs >= 80.0) & (freqs < 8000.0)
    level = np.empty(frames, dtype=np.float32)
    sibilance = np.empty(frames, dtype=np.float32)
    offsets = np.arange(_WINDOW)
    for start in range(0, frames, _CHUNK):
        idx = centers[start : start + _CHUNK, None] + offsets[None, :]
        idx = np.minimum(idx, len(padded) - 1)
        raw = padded[idx]
        power = np.abs(np.fft.rfft(raw * window, axis=1)) ** 2
        total = power[:, band].sum(axis=1) + 1e-12
        level[start : start + _CHUNK] = 10 * np.log10(np.mean(raw * raw, axis=1) + 1e-10)  # dBFS
        sibilance[start : start + _CHUNK] = power[:, high].sum(axis=1) / total
    loudness = _normalise_level(level)
    return SpeechFeatures(loudness=loudness, sibilance=np.clip(sibilance, 0.0, 1.0).astype(np.float32))


def _normalise_level(level: FloatArray) -> FloatArray:
    if level.size == 0:
        return level
    top = float(np.percentile(level, 95))
    floor = max(top - 45.0, -60.0)  # never treat hiss under -60 dBFS as speech
    if top <= floor + 1e-3:
        return np.zeros_like(level)
    return np.clip((level - floor) / (top - floor), 0.0, 1.0).astype(np.float32)
