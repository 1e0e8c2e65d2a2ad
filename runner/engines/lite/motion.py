"""Blinks and head motion: the parts of a talking face that are not the mouth.

Blinks come at random (a renewal process with a refractory gap, seeded so a render is
reproducible) and last about 120 ms. The head sways slowly (a sum of incommensurate sines)
and nods with the speech's energy, scaled by the request's headMotion.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

BLINK_SECONDS = 0.12
_MIN_GAP_SECONDS = 1.2  # people rarely blink twice within this
# Amplitudes at headMotion = 1: roll in radians, translations in face heights.
_ROLL = np.deg2rad(1.6)
_SHIFT_X = 0.012
_SHIFT_Y = 0.010


def blink_track(frames: int, fps: float, per_minute: float, seed: int) -> FloatArray:
    """Eyelid closure per frame, 0 open .. 1 shut."""
    closure = np.zeros(frames, dtype=np.float32)
    if per_minute <= 0 or frames == 0:
        return closure
    rng = np.random.default_rng(seed)
    duration = frames / fps
    mean_gap = 60.0 / per_minute
    t = rng.uniform(0.3, 0.3 + mean_gap)  # first blink soon, but not on frame 0
    times = (np.arange(frames) + 0.5) / fps
    while t < duration:
        # Fast close (40 % of the blink), slower open: a triangle skewed to the start.
        rel = (times - t) / BLINK_SECONDS
        shape = np.where(rel < 0.4, rel / 0.4, 1.0 - (rel - 0.4) / 0.6)
        closure = np.maximum(closure, np.clip(shape, 0.0, 1.0).astype(np.float32))
        t += _MIN_GAP_SECONDS + rng.exponential(max(mean_gap - _MIN_GAP_SECONDS, 0.2))
    # Frames are 40 ms long at 25 fps: widen so a blink is never missed between two frames.
    if fps < 1.5 / BLINK_SECONDS:
        closure = np.maximum(closure, np.concatenate(([0.0], closure[:-1])).astype(np.float32) * 0.5)
    return closure


def head_track(loudness: FloatArray, fps: float, amount: float, seed: int) -> FloatArray:
    """(frames, 3): roll (radians), x and y shift (face heights)."""
    frames = len(loudness)
    out = np.zeros((frames, 3), dtype=np.float32)
    if amount <= 0 or frames == 0:
        return out
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    sway = np.zeros((frames, 3))
    for axis in range(3):
        for freq in (0.11, 0.23, 0.37):
            f = freq * rng.uniform(0.8, 1.25)
            sway[:, axis] += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / 3
    # Energy envelope smoothed over ~0.4 s drives nods (down on stressed syllables) and livelier sway.
    kernel = np.hanning(max(3, int(0.4 * fps)) | 1)
    energy = np.convolve(np.pad(loudness, len(kernel) // 2, mode="edge"), kernel / kernel.sum(), mode="valid")
    nod = energy - np.convolve(
        np.pad(energy, int(fps), mode="edge"), np.ones(2 * int(fps) + 1) / (2 * int(fps) + 1), mode="valid"
    )
    liveliness = 0.5 + 0.5 * energy
    out[:, 0] = _ROLL * sway[:, 0] * liveliness
    out[:, 1] = _SHIFT_X * sway[:, 1] * liveliness
    out[:, 2] = _SHIFT_Y * (0.5 * sway[:, 2] * liveliness + 1.5 * nod)
    return (out * amount).astype(np.float32)
