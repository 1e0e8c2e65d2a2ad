"""Speech to a per-frame mouth-shape track: visemes from phones (or letters), co-articulated,
then scaled by loudness so the jaw follows the voice's energy and closes in silence, and lips
pressed shut wherever they must meet (lip contact)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from multitalk.runner.engines.lite.coarticulation import Target, blend
from multitalk.runner.engines.lite.features import SpeechFeatures
from multitalk.runner.engines.lite.phonemes import Phone
from multitalk.runner.engines.lite.visemes import BILABIAL, SHAPE_FIELDS, letter_viseme, phone_viseme

FloatArray = npt.NDArray[np.float32]

MOUTH_CHANNELS = len(SHAPE_FIELDS)  # open, wide, round, tuck, closed


def phone_targets(phones: list[Phone]) -> list[Target]:
    targets = []
    for phone in phones:
        viseme = phone_viseme(phone.label)
        half = max(phone.end - phone.start, 0.01) / 2
        targets.append(Target(phone.start + half, half, viseme.shape, viseme.dominance))
    return targets


def letter_targets(posteriors: FloatArray, labels: list[str], step_seconds: float) -> list[Target]:
    """Targets from CTC letter posteriors (T x V): each step's expected shape over its letters,
    weighted by how sure the model is that some letter (not blank) is being said."""
    shaped = [(i, v) for i, label in enumerate(labels) if (v := letter_viseme(label)) is not None]
    if not shaped:
        return []
    index = np.array([i for i, _ in shaped])
    shapes = np.array([v.shape for _, v in shaped], dtype=np.float32)
    dominance = np.array([v.dominance for _, v in shaped], dtype=np.float32)
    probs = posteriors[:, index]
    mass = probs.sum(axis=1)
    targets = []
    for t in np.flatnonzero(mass > 0.3):
        p = probs[t] / mass[t]
        targets.append(
            Target(
                (t + 0.5) * step_seconds,
                step_seconds / 2,
                tuple(float(x) for x in p @ shapes),
                float(mass[t] * (p @ dominance)),
            )
        )
    return targets


def phone_contact(phones: list[Phone], fps: float, frames: int) -> FloatArray:
    """1 on the frames where an M, B or P holds the lips shut: those whose exposure overlaps the
    middle half of the phone, and always the frame holding its centre (a closure is never
    averaged away, however short)."""
    contact = np.zeros(frames, dtype=np.float32)
    for phone in phones:
        if phone.label.upper().rstrip("012") not in BILABIAL:
            continue
        quarter = (phone.end - phone.start) / 4
        first = int(np.floor((phone.start + quarter) * fps))
        last = int(np.ceil((phone.end - quarter) * fps)) - 1
        centre = int(np.floor((phone.start + phone.end) / 2 * fps))
        lo, hi = max(min(first, centre), 0), min(max(last, centre) + 1, frames)
        contact[lo:hi] = 1.0
    return contact


def mouth_track(
    targets: list[Target],
    features: SpeechFeatures,
    fps: float,
    frames: int,
    contact: FloatArray | None = None,
    acoustic: float = 0.0,
) -> FloatArray:
    """(frames, 5): open, wide, round, tuck, closed, each 0..1.

    `acoustic` (0..1) is how much the jaw follows the F1 openness cue rather than the phones'
    visemes: 0 when the phones are known (transcript), more when they are guessed. `contact`
    (0..1 per frame) presses the lips shut over whatever the visemes say.
    """
    loud = features.loudness
    voiced = np.clip(loud / 0.15, 0.0, 1.0)  # silence gate: below ~15 % of the level range the mouth rests
    scale = (0.35 + 0.65 * loud) * voiced
    if targets:
        shape = blend(targets, fps, frames, MOUTH_CHANNELS)
        shape[:, 0] = (1 - acoustic) * shape[:, 0] * scale + acoustic * features.openness * scale
    else:
        # No phones at all (e.g. no recogniser result): the F1 cue alone, a little on loudness.
        shape = np.zeros((frames, MOUTH_CHANNELS), dtype=np.float32)
        shape[:, 0] = (0.8 * features.openness + 0.2 * loud) * scale
        per_frame = [Target((f + 0.5) / fps, 0.5 / fps, tuple(shape[f]), 1.0) for f in range(frames)]
        shape = blend(per_frame, fps, frames, MOUTH_CHANNELS)
    shape[:, 1:] *= voiced[:, None] ** 0.5
    if contact is not None:
        shape[:, 0] *= 1.0 - contact
        shape[:, 4] = np.maximum(shape[:, 4], contact)
    return np.clip(shape, 0.0, 1.0).astype(np.float32)
