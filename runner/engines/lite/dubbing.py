"""Lite dubbing: landmarks tracked on every source frame, the mouth re-shaped to new speech.

prepare() runs the face mesh on each output frame of the source video and follows each
speaker's face from frame to frame (nearest centre). Landmarks are then filled across short
gaps (a hand over the face, a turned head: up to MAX_GAP_SECONDS, linearly) and smoothed with
a centred window, so the warp's lip seam does not jitter with the mesh. A longer gap is left
empty: those frames are the source's, untouched, and the engine's notes say how many.

The source's own mouth moves with its own speech, jaw included, so it cannot be reshaped in
place. Each face's resting frame (its smallest lip gap) stands in for the portrait: its
FaceWarp draws the new speech's mouth, and that lower face is carried onto every frame by the
similarity transform between the two frames' upper-face landmarks (eye corners, nose, brow,
cheeks: the jaw does not move them), blended in with a feathered mask from below the nose to
under the chin. Blinks and head motion are the source's: nothing above the nose and nothing
outside the face crop is written.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from multitalk.runner.engines.base import Image, SourceFrames
from multitalk.runner.engines.lite.landmarks import (
    CHIN,
    FACE_OVAL,
    FOREHEAD,
    NOSE_TIP,
    Face,
    FaceFinder,
    check_face,
    explain_no_face,
)
from multitalk.runner.engines.lite.speakers import assign_faces, crop_limits
from multitalk.runner.engines.lite.warp import FaceWarp
from multitalk.runner.errors import InvalidInput
from multitalk.runner.request import Box

FloatArray = npt.NDArray[np.float32]
UPPER_LIP_MID, LOWER_LIP_MID = 13, 14  # the mesh's inner-lip points at the mouth's centre
# Upper-face landmarks the jaw does not move: brow, eye corners, nose bridge and tip, cheeks.
STABLE = (10, 33, 133, 263, 362, 168, 6, 1, 234, 454)
REST_PERCENTILE = 30  # people rest their mouths between phrases; a third of the time it is closer
CHIN_MARGIN = 0.12  # the mask reaches this far below the chin (face heights)

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
        following = any(face is not None for face in last)
        # Once faces are followed, the mesh alone finds them (a third of find()'s cost); the
        # detector's proposals are only needed for small faces it misses.
        faces = finder.mesh(image) if following else []
        if len(faces) < speakers:
            faces, unconfirmed = finder.find(image)
        if not following:
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


def frame_faces(tracks: FaceTracks, index: int) -> list[tuple[int, Face]]:
    """(speaker, face) of the speakers whose face is known on this frame."""
    return [(i, Face(track[index])) for i, track in enumerate(tracks.points) if not np.isnan(track[index, 0, 0])]


def source_frame(source: SourceFrames, index: int) -> Image:
    """A writable copy of the source's frame (SourceVideo hands out its cached array)."""
    return np.array(source.frame(index), dtype=np.uint8, copy=True)


def lip_gaps(points: FloatArray) -> FloatArray:
    """(T, P, 2) tracks -> the inner-lip gap at the mouth's centre per frame, in face heights (NaN: no face)."""
    gap = points[:, LOWER_LIP_MID, 1] - points[:, UPPER_LIP_MID, 1]
    height = np.linalg.norm(points[:, CHIN] - points[:, FOREHEAD], axis=1)
    gaps: FloatArray = (np.maximum(gap, 0.0) / np.maximum(height, 1e-6)).astype(np.float32)
    return gaps


def resting_frame(points: FloatArray) -> int:
    """A relaxed mouth: the frame whose lip gap is nearest the REST_PERCENTILE of the face's gaps.
    Not the smallest: that is lips pressed for an M or a B, from which an opening looks timid."""
    gaps = lip_gaps(points)
    target = float(np.nanpercentile(gaps, REST_PERCENTILE))
    return int(np.nanargmin(np.abs(gaps - target)))


def lower_face_mask(shape: tuple[int, int], face: Face) -> FloatArray:
    """Where the carried lower face replaces the frame: inside the face oval from the nose down,
    reaching below the chin (a source jaw dropped by its own speech is covered), feathered."""
    pts = face.points
    fh = face.height
    nose_y = float(pts[NOSE_TIP, 1])
    oval = pts[list(FACE_OVAL)].copy()
    below = oval[:, 1] > nose_y
    chin_x, chin_y = float(pts[CHIN, 0]), float(pts[CHIN, 1])
    # Points under the mouth move outwards and down, more towards the chin.
    depth = np.clip((oval[:, 1] - nose_y) / max(chin_y - nose_y, 1.0), 0.0, 1.0)
    oval[below, 1] += CHIN_MARGIN * fh * depth[below]
    oval[below, 0] += 0.03 * fh * np.sign(oval[below, 0] - chin_x) * depth[below]
    mask = np.zeros(shape, dtype=np.float32)
    cv2.fillPoly(mask, [np.round(oval * 4).astype(np.int32)], (1.0,), cv2.LINE_AA, 2)
    ys = np.arange(shape[0], dtype=np.float32)[:, None]
    start = nose_y + 0.02 * fh
    mask *= np.clip((ys - start) / (0.08 * fh), 0.0, 1.0)  # nothing at or above the nose
    feather = max(0.025 * fh, 1.0)
    blurred = np.asarray(cv2.GaussianBlur(mask, (0, 0), feather), dtype=np.float32)
    blurred[ys[:, 0] <= start] = 0.0
    return blurred


class RestingMouth:
    """One speaker's resting frame, animated like a portrait and carried onto each source frame."""

    def __init__(self, image: Image, face: Face, x_limits: tuple[int, int]) -> None:
        self.image = np.ascontiguousarray(image)
        self.face = face
        self.warp = FaceWarp(self.image, face, x_limits)
        self.mask = lower_face_mask((image.shape[0], image.shape[1]), face)

    def render(self, frame: Image, face: Face, motion: FloatArray, expression: float) -> None:
        """Draw the new mouth onto frame (in place) where this frame shows the face."""
        transform, _ = cv2.estimateAffinePartial2D(self.face.points[list(STABLE)], face.points[list(STABLE)])
        if transform is None:
            return  # degenerate landmarks: the frame stays as filmed
        drawn = self.image.copy()
        self.warp.render(drawn, motion, expression)
        h, w = frame.shape[:2]
        alpha = np.asarray(cv2.warpAffine(self.mask, transform, (w, h), flags=cv2.INTER_LINEAR), dtype=np.float32)
        rows, cols = np.nonzero(alpha > 1e-3)
        if rows.size == 0:
            return
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        shift = np.array([[0, 0, c0], [0, 0, r0]], dtype=np.float64)
        patch = cv2.warpAffine(
            drawn, transform - shift, (c1 - c0, r1 - r0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        a = alpha[r0:r1, c0:c1, None]
        region = frame[r0:r1, c0:c1].astype(np.float32)
        frame[r0:r1, c0:c1] = (region * (1 - a) + patch.astype(np.float32) * a + 0.5).astype(np.uint8)


def resting_mouths(source: SourceFrames, tracks: FaceTracks, width: int) -> list[RestingMouth]:
    """Per speaker, the resting frame's face, with its crop kept off the other speaker's face there."""
    mouths = []
    for speaker, track in enumerate(tracks.points):
        rest = resting_frame(track)
        faces = frame_faces(tracks, rest)
        limits = crop_limits([face for _, face in faces], width)
        mine = next(k for k, (i, _) in enumerate(faces) if i == speaker)
        mouths.append(RestingMouth(source_frame(source, rest), faces[mine][1], limits[mine]))
    return mouths
