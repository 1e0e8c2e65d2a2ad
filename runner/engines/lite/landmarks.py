"""Faces and their 468 landmarks on the reference portrait, and the checks that refuse unusable ones.

mediapipe 0.10.21's face mesh ships its models inside the wheel, so nothing is downloaded.
The mesh's own detector only sees faces that fill a fair part of the picture, so
mediapipe's full-range face detector (also in the wheel) proposes smaller faces, which the
mesh re-examines on an enlarged crop. OpenCV's Haar cascade (shipped with opencv before
5.0) is the coarse fallback when mediapipe sees nothing. A proposal the mesh cannot confirm
only sharpens the error message (too small, cut by the border, a drawing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from multitalk.runner.engines.lite.mediapipe_import import face_modules
from multitalk.runner.errors import InvalidInput

FloatArray = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]  # top, left, bottom, right (rows first, like the request's bbox)

# Documented thresholds (docs/engines/lite.md).
MIN_FACE_HEIGHT_PX = 64  # forehead-to-chin; below this the mouth is a few pixels and cannot be shaped
BORDER_TOLERANCE = 0.03  # brows-to-chin may reach this fraction of the face height past the edge
DRAWING_PALETTE_SHARE = 0.25  # share of the face covered by its 16 commonest exact colours: photos < 0.12
DRAWING_PALETTE_SHARE_GRAY = 0.45  # the same for black-and-white pictures (256 levels): photos < 0.35

# mediapipe face-mesh indices used across the engine.
FOREHEAD, CHIN = 10, 152
CHEEK_RIGHT, CHEEK_LEFT = 234, 454  # image-left and image-right face extremes
NOSE_TIP = 1
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_LIP_CORNERS = (61, 291)
OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
# Eyes as (corner, corner, upper lid, lower lid) with the lid points paired top/bottom.
EYES = (
    (33, 133, (246, 161, 160, 159, 158, 157, 173), (7, 163, 144, 145, 153, 154, 155)),
    (263, 362, (466, 388, 387, 386, 385, 384, 398), (249, 390, 373, 374, 380, 381, 382)),
)


@dataclass(frozen=True, eq=False)  # identity equality: points is an array
class Face:
    """One face: landmark positions in image pixels (x, y)."""

    points: FloatArray  # (468, 2)

    @property
    def height(self) -> float:
        return float(np.linalg.norm(self.points[CHIN] - self.points[FOREHEAD]))

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.points[CHEEK_LEFT] - self.points[CHEEK_RIGHT]))

    @property
    def box(self) -> Box:
        """Tight box of the face oval: top, left, bottom, right."""
        oval = self.points[list(FACE_OVAL)]
        return (float(oval[:, 1].min()), float(oval[:, 0].min()), float(oval[:, 1].max()), float(oval[:, 0].max()))

    @property
    def center(self) -> tuple[float, float]:
        top, left, bottom, right = self.box
        return ((left + right) / 2, (top + bottom) / 2)


def mouth_opening(face: Face) -> float:
    """Inner-lip gap at the mouth's centre as a fraction of face height (0 = lips together)."""
    gap = float(face.points[14, 1] - face.points[13, 1])
    return max(gap, 0.0) / max(face.height, 1e-6)


class FaceFinder:
    """mediapipe face mesh plus Haar proposals; create once, reuse for every image."""

    def __init__(self) -> None:
        face_mesh, face_detection = face_modules()  # only these two: all of mediapipe takes a second
        self._mesh: Any = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=4, refine_landmarks=False, min_detection_confidence=0.5
        )
        # The full-range detector (also in the wheel) sees faces down to ~20 px; used for proposals.
        self._detector: Any = face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        cascade = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._haar = cv2.CascadeClassifier(cascade)
        if self._haar.empty():
            raise RuntimeError(f"OpenCV's Haar cascade is missing ({cascade})")

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()

    def detect(self, image: Image) -> list[Box]:
        """Face boxes from mediapipe's full-range detector (no landmarks)."""
        height, width = image.shape[:2]
        boxes = []
        for det in self._detector.process(np.ascontiguousarray(image)).detections or ():
            b = det.location_data.relative_bounding_box
            top, left = b.ymin * height, b.xmin * width
            boxes.append((top, left, top + b.height * height, left + b.width * width))
        return boxes

    def mesh(self, image: Image) -> list[Face]:
        """Faces the mesh finds in the whole image."""
        result = self._mesh.process(np.ascontiguousarray(image))
        height, width = image.shape[:2]
        faces = []
        for marks in result.multi_face_landmarks or ():
            pts = np.array([(m.x * width, m.y * height) for m in marks.landmark], dtype=np.float32)
            faces.append(Face(pts))
        return faces

    def haar(self, image: Image) -> list[Box]:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        found = self._haar.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(16, 16))
        return [(float(y), float(x), float(y + h), float(x + w)) for x, y, w, h in np.asarray(found).reshape(-1, 4)]

    def mesh_in_box(self, image: Image, box: Box) -> Face | None:
        """Re-run the mesh on an enlarged square crop around a proposal (small faces)."""
        top, left, bottom, right = box
        side = 2.2 * max(bottom - top, right - left)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        x1, y1 = round(cx + side / 2), round(cy + side / 2)
        height, width = image.shape[:2]
        pad = ((max(0, -y0), max(0, y1 - height)), (max(0, -x0), max(0, x1 - width)), (0, 0))
        crop = np.pad(image[max(0, y0) : y1, max(0, x0) : x1], pad, mode="edge")
        scale = max(1.0, 384 / crop.shape[0])
        if scale > 1:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        faces = self.mesh(crop)
        if not faces:
            return None
        best = max(faces, key=lambda f: f.height)
        return Face((best.points / scale + np.array([x0, y0], dtype=np.float32)).astype(np.float32))

    def find(self, image: Image) -> tuple[list[Face], list[Box]]:
        """All faces with landmarks, largest first, and the Haar proposals no mesh confirmed."""
        faces = self.mesh(image)
        unconfirmed: list[Box] = []
        proposals = self.detect(image)
        if not proposals and not faces:
            proposals = self.haar(image)  # the coarse fallback, only when mediapipe sees nothing
        for box in proposals:
            if any(_inside(face.center, box) or _inside(_box_center(box), face.box) for face in faces):
                continue
            found = self.mesh_in_box(image, box)
            if found is not None and _inside(found.center, _grow(box, 0.3)):
                faces.append(found)
            elif not any(_inside(_box_center(box), other) for other in unconfirmed):
                unconfirmed.append(box)
        faces.sort(key=lambda f: -f.height)
        return faces, unconfirmed


def _box_center(box: Box) -> tuple[float, float]:
    return ((box[1] + box[3]) / 2, (box[0] + box[2]) / 2)


def _inside(point: tuple[float, float], box: Box) -> bool:
    x, y = point
    return box[1] <= x <= box[3] and box[0] <= y <= box[2]


def _grow(box: Box, fraction: float) -> Box:
    dy, dx = (box[2] - box[0]) * fraction, (box[3] - box[1]) * fraction
    return (box[0] - dy, box[1] - dx, box[2] + dy, box[3] + dx)


def palette_share(region: Image) -> float:
    """Share of pixels painted in the region's 16 commonest exact colours.

    Photographs have sensor noise and skin texture, so no colour repeats much (0.01-0.12 measured
    on photos); line art, cartoons and flat-colour drawings reuse a few colours (0.45-0.85). A drawing
    saved as a lossy JPEG gains noise and can pass as a photo.
    """
    if region.size == 0:
        return 0.0
    pixels = region.reshape(-1, 3).astype(np.int32)
    codes = (pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]
    counts = np.sort(np.unique(codes, return_counts=True)[1])[::-1]
    return float(counts[:16].sum() / codes.size)


def is_grayscale(region: Image) -> bool:
    spread = region.max(axis=-1).astype(np.int16) - region.min(axis=-1)
    return bool(np.mean(spread <= 2) > 0.99)


def drawing_threshold(region: Image) -> float:
    return DRAWING_PALETTE_SHARE_GRAY if is_grayscale(region) else DRAWING_PALETTE_SHARE


def looks_like_drawing(region: Image) -> bool:
    return palette_share(region) > drawing_threshold(region)


def crop_box(image: Image, box: Box) -> Image:
    height, width = image.shape[:2]
    top, left, bottom, right = box
    return image[max(0, int(top)) : min(height, int(bottom) + 1), max(0, int(left)) : min(width, int(right) + 1)]


def check_face(image: Image, face: Face, field: str = "image") -> None:
    """Refuse faces the warp cannot animate convincingly: tiny, cut by the border, drawn."""
    height, width = image.shape[:2]
    if face.height < MIN_FACE_HEIGHT_PX:
        raise InvalidInput(
            f"the face is only {face.height:.0f} px tall (forehead to chin) in the {width}x{height} frame; "
            f"the lite engine needs at least {MIN_FACE_HEIGHT_PX} px: use a closer portrait or a larger video size",
            field=field,
        )
    # Everything from the eyebrows down is animated and must be inside; a cropped forehead is fine.
    margin = BORDER_TOLERANCE * face.height
    brows = float(face.points[[c for eye in EYES for c in eye[2]], 1].min()) - 0.12 * face.height
    needed = face.points[face.points[:, 1] >= brows]
    sides = {
        "left": bool((needed[:, 0] < -margin).any()),
        "top": bool((needed[:, 1] < -margin).any()),
        "right": bool((needed[:, 0] > width - 1 + margin).any()),
        "bottom": bool((needed[:, 1] > height - 1 + margin).any()),
    }
    cut = [side for side, out in sides.items() if out]
    if cut:
        raise InvalidInput(
            f"the face is cut by the {' and '.join(cut)} border of the image (after fitting to {width}x{height}); "
            "use a portrait with the whole face and some margin around it",
            field=field,
        )
    region = crop_box(image, face.box)
    share = palette_share(region)
    if share > drawing_threshold(region):
        raise InvalidInput(
            f"the face looks like a drawing or flat-colour illustration ({share:.0%} of it is painted in "
            "16 colours); the lite engine animates photographs of real faces",
            field=field,
        )


def explain_no_face(image: Image, unconfirmed: list[Box], field: str = "image") -> InvalidInput:
    """The clearest message for an image where no usable face was found."""
    height, width = image.shape[:2]
    if unconfirmed:
        top, left, bottom, right = max(unconfirmed, key=lambda b: b[2] - b[0])
        size = bottom - top
        if size < 1.2 * MIN_FACE_HEIGHT_PX:
            return InvalidInput(
                f"found only a tiny face ({size:.0f} px box at x={left:.0f}, y={top:.0f} in the {width}x{height} "
                f"frame); the lite engine needs a face at least {MIN_FACE_HEIGHT_PX} px tall: use a closer portrait",
                field=field,
            )
        edge = min(top, left, height - bottom, width - right)
        if edge < 0.05 * size:
            return InvalidInput(
                "a face-like region touches the image border but its landmarks cannot be located; "
                "the face seems cut by the border: use a portrait with the whole face visible",
                field=field,
            )
    if looks_like_drawing(image):
        return InvalidInput(
            f"no photographic face found: the image looks like a drawing or illustration ({palette_share(image):.0%} "
            "of it is painted in 16 colours); the lite engine animates photographs of real faces",
            field=field,
        )
    return InvalidInput(
        "no face found in the image; the lite engine needs a clear, roughly frontal photograph of a face "
        f"at least {MIN_FACE_HEIGHT_PX} px tall with the whole face inside the frame",
        field=field,
    )
