"""Lite dubbing: landmarks tracked on every source frame, the mouth re-shaped to new speech.

prepare() runs the face mesh on each output frame of the source video and follows each
speaker's face from frame to frame (nearest centre). Landmarks are then filled across short
gaps (a hand over the face, a turned head: up to MAX_GAP_SECONDS, linearly) and smoothed with
a centred window, so the warp's lip seam does not jitter with the mesh. A longer gap is left
empty: those frames are the source's, untouched, and the engine's notes say how many.

frames(): each source frame gets a FaceWarp built from its own smoothed landmarks; the mouth
first closes whatever gap the source shows (its own speech) and then opens as the new
speech says. Blinks and head motion are the source's: nothing above the nose and nothing
outside the face crop is written.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from multitalk.runner.engines.base import Image, SourceFrames
from multitalk.runner.engines.lite.landmarks import Face, FaceFinder, check_face, explain_no_face
from multitalk.runner.engines.lite.speakers import assign_faces, crop_limits
from multitalk.runner.errors import InvalidInput
from multitalk.runner.request import Box

FloatArray = npt.NDArray[np.float32]

MAX_GAP_SECONDS = 0.5  # a face lost for longer is not guessed: those frames stay the source's
SMOOTH_SECONDS = 0.08  # radius of the centred smoothing window (2 frames at 25 fps)
# A face counts as the same person in the next frame when its centre moved less than this
# fraction of its height (a head turn between two frames is far less).
FOLLOW_DISTANCE = 0.5
FIELD = "sourceVideo"


def fill_and_smooth(points: FloatArray, max_gap: int, radius: int) -> FloatArray:
    """(T, P, 2) landmark tracks with NaN rows for frames without the face -> gaps of at most max_gap
    frames filled linearly between their neighbours, then a centred triangular window of the given
    radius over the frames that have the face (missing frames neither take part nor change)."""
    frames = points.shape[0]
    present = ~np.isnan(points[:, 0, 0])
    filled = points.copy()
    idx = np.flatnonzero(present)
    for a, b in itertools.pairwise(idx):
        gap = b - a - 1
        if 0 < gap <= max_gap:
            t = (np.arange(1, gap + 1, dtype=np.float32) / (gap + 1))[:, None, None]
            filled[a + 1 : b] = points[a] * (1 - t) + points[b] * t
    have = ~np.isnan(filled[:, 0, 0])
    if radius <= 0 or not have.any():
        return filled
    weights = np.array([radius + 1 - abs(k) for k in range(-radius, radius + 1)], dtype=np.float32)
    out = filled.copy()
    for t in np.flatnonzero(have):
        lo, hi = max(0, t - radius), min(frames, t + radius + 1)
        w = weights[lo - t + radius : hi - t + radius] * have[lo:hi]
        window = np.nan_to_num(filled[lo:hi])
        out[t] = np.tensordot(w / w.sum(), window, axes=1)
    return out


@dataclass(frozen=True)
class FaceTracks:
    """Per speaker, (T, P, 2) landmark positions in frame pixels; NaN rows where the face is lost."""

    points: list[FloatArray]
    detected: list[int]  # frames where the mesh found each speaker's face
    lost: list[int]  # frames left untouched for each speaker (gaps too long to fill)


def _nearest(faces: Sequence[Face], centre: tuple[float, float], height: float) -> Face | None:
    best = min(faces, key=lambda f: np.hypot(f.center[0] - centre[0], f.center[1] - centre[1]), default=None)
    if best is None:
        return None
    distance = float(np.hypot(best.center[0] - centre[0], best.center[1] - centre[1]))
    return best if distance <= FOLLOW_DISTANCE * height else None


def track_faces(
    source: SourceFrames,
    frames: int,
    fps: int,
    finder: FaceFinder,
    bboxes: list[Box | None],
    progress: Callable[[float], None],
) -> FaceTracks:
    """Find each speaker's face on every frame: the first frame with enough faces assigns them (boxes
    or left to right, as for a portrait); later frames follow each face by its nearest centre."""
    speakers = len(bboxes)
    raw: list[FloatArray | None] = [None] * speakers
    last: list[Face | None] = [None] * speakers
    first_refusal: InvalidInput | None = None
    every = max(1, frames // 50)
    for index in range(frames):
        image = source.frame(index)
        faces, unconfirmed = finder.find(image)
        if all(face is None for face in last):
            try:
                chosen: list[Face | None] = list(assign_faces(faces, bboxes)) if faces else [None] * speakers
            except InvalidInput as exc:  # not enough faces on this frame: try the next one
                first_refusal = first_refusal or exc
                chosen = [None] * speakers
            if first_refusal is None and not faces:
                first_refusal = explain_no_face(image, unconfirmed, field=FIELD)
            for i, face in enumerate(chosen):
                if face is not None:
                    check_face(image, face, field=FIELD if bboxes[i] is None else f"speakers[{i}].bbox")
        else:
            chosen = []
            free = list(faces)
            for prev in last:
                face = None if prev is None else _nearest(free, prev.center, prev.height)
                if face is not None:
                    free.remove(face)
                chosen.append(face)
        for i, face in enumerate(chosen):
            if face is None:
                continue
            if raw[i] is None:
                raw[i] = np.full((frames, *face.points.shape), np.nan, dtype=np.float32)
            track = raw[i]
            assert track is not None
            track[index] = face.points
            last[i] = face
        if index % every == 0:
            progress(index / frames)
    if any(track is None for track in raw):
        if first_refusal is not None:
            raise InvalidInput(f"no usable face in any frame: {first_refusal.message}", FIELD)
        raise InvalidInput("no usable face in any frame of the source video", FIELD)
    tracks = [track for track in raw if track is not None]
    max_gap = round(MAX_GAP_SECONDS * fps)
    radius = max(1, round(SMOOTH_SECONDS * fps))
    points = [fill_and_smooth(track, max_gap, radius) for track in tracks]
    detected = [int((~np.isnan(track[:, 0, 0])).sum()) for track in tracks]
    lost = [int(np.isnan(track[:, 0, 0]).sum()) for track in points]
    return FaceTracks(points, detected, lost)


def frame_faces(tracks: FaceTracks, index: int, width: int) -> list[tuple[int, Face, tuple[int, int]]]:
    """(speaker, face, crop limits) of the speakers whose face is known on this frame."""
    known = [(i, Face(track[index])) for i, track in enumerate(tracks.points) if not np.isnan(track[index, 0, 0])]
    limits = crop_limits([face for _, face in known], width)
    return [(i, face, lim) for (i, face), lim in zip(known, limits, strict=True)]


def source_frame(source: SourceFrames, index: int) -> Image:
    """A writable copy of the source's frame (SourceVideo hands out its cached array)."""
    return np.array(source.frame(index), dtype=np.uint8, copy=True)
