"""Which face belongs to which speaker, and where each face's crop may extend."""

from __future__ import annotations

from multitalk.runner.engines.lite.landmarks import Box, Face
from multitalk.runner.errors import InvalidInput


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, bottom - top) * max(0.0, right - left)
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / smaller if smaller > 0 else 0.0


def assign_faces(faces: list[Face], bboxes: list[Box | None]) -> list[Face]:
    """One face per speaker: a speaker's bbox picks the face it overlaps most; speakers without a
    bbox take the largest remaining faces, ordered left to right (speaker 1 is the leftmost)."""
    chosen: list[Face | None] = [None] * len(bboxes)
    free = list(faces)  # largest first
    for i, bbox in enumerate(bboxes):
        if bbox is None:
            continue
        scored = [(_overlap(face.box, bbox), face) for face in free]
        best = max(scored, key=lambda s: s[0], default=(0.0, None))
        if best[1] is None or best[0] < 0.3:
            raise InvalidInput(
                f"no face found inside the bbox (on the video frame it covers [top, left, bottom, right] = "
                f"{[round(v) for v in bbox]}); faces found there: {[[round(v) for v in f.box] for f in faces]}",
                field=f"speakers[{i}].bbox",
            )
        chosen[i] = best[1]
        free.remove(best[1])
    missing = [i for i, face in enumerate(chosen) if face is None]
    if len(free) < len(missing):
        raise InvalidInput(
            f"{len(bboxes)} speakers need {len(bboxes)} faces but the image has {len(faces)} usable face(s)",
            field="image",
        )
    picked = sorted(free[: len(missing)], key=lambda f: f.center[0])
    for i, face in zip(missing, picked, strict=True):
        chosen[i] = face
    return [face for face in chosen if face is not None]


def crop_limits(faces: list[Face], width: int) -> list[tuple[int, int]]:
    """Horizontal limits per face so two faces' crops never overlap (split halfway between them)."""
    limits = [(0, width) for _ in faces]
    if len(faces) == 2:
        a, b = faces
        left, right = (0, 1) if a.center[0] <= b.center[0] else (1, 0)
        split = round((faces[left].box[3] + faces[right].box[1]) / 2)
        limits[left] = (0, split)
        limits[right] = (split, width)
    return limits
