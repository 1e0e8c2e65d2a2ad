"""Co-articulation: blend each phone's target shape with its neighbours' (dominance functions).

Each phone pulls the mouth towards its target with a weight that peaks at its centre and
decays exponentially with distance (Cohen & Massaro's dominance model); the shape at time t
is the weighted mean of all targets plus a weak pull to rest. Each video frame averages
several instants inside its exposure, so short phones are not lost between frames and the
result does not flicker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

_SUBSAMPLES = 4  # instants per frame
_REST_WEIGHT = 0.08  # pull towards the rest shape everywhere (mouth closes in long pauses)
_REACH = 5.0  # a phone influences times within this many time constants of its centre


@dataclass(frozen=True)
class Target:
    """One shape target: centre time and half-length in seconds, shape values and dominance."""

    center: float
    half: float
    shape: tuple[float, ...]
    dominance: float


def blend(targets: list[Target], fps: float, frames: int, channels: int) -> FloatArray:
    """Shape per frame, shape (frames, channels)."""
    steps = frames * _SUBSAMPLES
    times = (np.arange(steps, dtype=np.float64) + 0.5) / (fps * _SUBSAMPLES)
    weighted = np.zeros((steps, channels), dtype=np.float64)
    total = np.full(steps, _REST_WEIGHT, dtype=np.float64)
    for target in targets:
        # Longer phones hold their shape longer; a floor keeps 10 ms blips from becoming spikes.
        # Strong constraints (lip closure) are local: they dominate their own phone, not the vowels.
        tau = max(target.half, 0.025) * 0.9 / np.sqrt(max(target.dominance, 0.5))
        lo = np.searchsorted(times, target.center - _REACH * tau)
        hi = np.searchsorted(times, target.center + _REACH * tau)
        if hi <= lo:
            continue
        dist = np.abs(times[lo:hi] - target.center)
        # Flat top over the phone itself, exponential decay outside it.
        weight = target.dominance * np.exp(-np.maximum(dist - target.half * 0.5, 0.0) / tau)
        weighted[lo:hi] += weight[:, None] * np.asarray(target.shape, dtype=np.float64)[None, :]
        total[lo:hi] += weight
    shape = weighted / total[:, None]
    per_frame: FloatArray = shape.reshape(frames, _SUBSAMPLES, channels).mean(axis=1).astype(np.float32)
    return per_frame
