"""The renderer: move mouth, jaw, eyelids and head of one face by warping the reference crop.

Every motion is a precomputed field of backward offsets over the face crop (output pixel p
samples the reference at p + sum_i w_i * field_i(p)); a frame is a weighted sum of fields
and one cv2.remap of the crop, always from the untouched reference, so nothing drifts and
pixels outside the crop are never written. The fields are built from the landmarks:

- jaw: everything under the lip seam inside the lower face drops (less towards the jaw
  angles, fading into the neck), the upper lip lifts a little; the seam is sharp between the
  lips and soft across the cheeks, so skin stretches while the lips part;
- close: a reference with parted lips (a smile with teeth) closes by moving both lips to the
  seam, for M/B/P and silence;
- wide / round: horizontal stretch or squeeze of the lips (round also pouts vertically);
- tuck: lower lip up under the upper teeth (F/V);
- blink: each upper lid slides to 3/4 of the eye's height, the lower lid rises to meet it;
- head: roll about the neck and a small shift, fading to zero at the crop's edge.

The gap the jaw opens is painted as a dark mouth (with a hint of upper teeth when the
reference mouth is closed and has none to show).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from multitalk.runner.engines.lite.landmarks import (
    CHIN,
    EYES,
    FACE_OVAL,
    LOWER_INNER_LIP,
    NOSE_TIP,
    OUTER_LIP_CORNERS,
    OUTER_LIPS,
    UPPER_INNER_LIP,
    Face,
)

FloatArray = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]

# Full jaw drop at open = 1 and expression = 1, as a fraction of face height (forehead to chin).
JAW_DROP = 0.075
_UPPER_LIP_LIFT = 0.12  # upper lip rises this fraction of the jaw drop
_MOUTH_RGB = np.array([46, 14, 18], dtype=np.float32)
_TONGUE_RGB = np.array([150, 62, 66], dtype=np.float32)
_TEETH_RGB = np.array([228, 222, 212], dtype=np.float32)
# Lips close by the inner-lip gap the mesh reports (its inner-lip points sit inside the visible
# teeth, but with a hard step at the seam no teeth show): more overshoots, lips fold over each
# other, and a landmark detector reads that as parted (measured 0.015 of the face height at 1x,
# 0.023 at 1.2x, 0.05 at 1.9x).
_CLOSE_GAIN = 1.0

# Per-frame motion vector of one face, as produced by the engine's tracks.
OPEN, WIDE, ROUND, TUCK, CLOSED, BLINK, ROLL, SHIFT_X, SHIFT_Y = range(9)
CHANNELS = 9


@dataclass(frozen=True)
class _Field:
    rows: slice
    cols: slice
    dx: FloatArray | None
    dy: FloatArray | None


def _smoothstep(lo: float, hi: float, x: FloatArray) -> FloatArray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _lips_parted(source: Image, pts: FloatArray, face_height: float) -> bool:
    """True when the photo shows teeth or the mouth's inside between the lips.

    The mesh alone is not enough: it reports a small gap for closed lips in a smiling face. So
    the gap must be at least 1.5 % of the face height and, inside the outer lip contour, at least
    17 % of the pixels must look like teeth (brighter than the median by 20 levels and much less
    saturated) or 15 % like a dark mouth (under 45 % of the median brightness). Measured: a
    smile with teeth 21 % teeth-like, the same lips pressed shut 12 %.
    """
    gap = float(np.max(pts[list(LOWER_INNER_LIP), 1] - pts[list(UPPER_INNER_LIP), 1]))
    if gap < 0.015 * face_height:
        return False
    mask = np.zeros(source.shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(pts[list(OUTER_LIPS)]).astype(np.int32)], (1,))
    if mask.sum() < 16:
        return False
    hsv = cv2.cvtColor(source, cv2.COLOR_RGB2HSV)
    luma = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY).astype(np.float32)[mask > 0]
    sat = hsv[..., 1].astype(np.float32)[mask > 0]
    mid_luma, mid_sat = float(np.median(luma)), float(np.median(sat))
    teeth = float(np.mean((luma > mid_luma + 20) & (sat < 0.7 * mid_sat)))
    dark = float(np.mean(luma < 0.45 * mid_luma))
    return teeth >= 0.17 or dark >= 0.15


def _trim(dx: FloatArray | None, dy: FloatArray | None, eps: float = 0.01) -> _Field:
    """Keep only the rectangle where the field does anything (per-frame cost follows it)."""
    magnitude = np.zeros_like(dx if dx is not None else dy)
    for part in (dx, dy):
        if part is not None:
            magnitude = np.maximum(magnitude, np.abs(part))
    rows, cols = np.nonzero(magnitude > eps)
    if rows.size == 0:
        return _Field(slice(0, 0), slice(0, 0), None, None)
    r, c = slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)
    return _Field(
        r,
        c,
        None if dx is None else np.ascontiguousarray(dx[r, c]),
        None if dy is None else np.ascontiguousarray(dy[r, c]),
    )


class FaceWarp:
    """Precomputed warp fields for one face; `render` draws one frame's face into a frame."""

    def __init__(self, image: Image, face: Face, x_limits: tuple[int, int] | None = None) -> None:
        img_h, img_w = image.shape[:2]
        self.face_height = fh = face.height
        fw = face.width
        top, left, bottom, right = face.box
        lo, hi = x_limits if x_limits is not None else (0, img_w)
        x0 = max(lo, math.floor(left - 0.45 * fw))
        x1 = min(hi, math.ceil(right + 0.45 * fw))
        y0 = max(0, math.floor(top - 0.55 * fh))
        y1 = min(img_h, math.ceil(bottom + 0.45 * fh))
        self.region = (y0, y1, x0, x1)
        self.source: Image = np.ascontiguousarray(image[y0:y1, x0:x1])
        h, w = y1 - y0, x1 - x0
        pts = (face.points - np.array([x0, y0], dtype=np.float32)).astype(np.float32)
        xs = np.arange(w, dtype=np.float32)
        ys = np.arange(h, dtype=np.float32)
        grid_x, grid_y = np.meshgrid(xs, ys)
        self._base_x, self._base_y = grid_x, grid_y

        # --- the lip seam: midline between inner lips, and the reference gap along it
        upper, lower = pts[list(UPPER_INNER_LIP)], pts[list(LOWER_INNER_LIP)]
        seam = (upper + lower) / 2
        order = np.argsort(seam[:, 0])
        self._seam = seam[order]
        self._ref_gaps = np.maximum(lower[order, 1] - upper[order, 1], 0.0)
        # The mesh reports a small gap even for closed lips in a smiling face: trust it only when
        # the pixels between the inner lips differ from the lips (teeth or a dark mouth show).
        self.parted = _lips_parted(self.source, pts, fh)
        if not self.parted:
            self._ref_gaps = np.zeros_like(self._ref_gaps)
        seam_y = np.interp(xs, self._seam[:, 0], self._seam[:, 1]).astype(np.float32)
        ref_gap = np.interp(xs, self._seam[:, 0], self._ref_gaps, left=0.0, right=0.0).astype(np.float32)
        corner_l, corner_r = pts[OUTER_LIP_CORNERS[0]], pts[OUTER_LIP_CORNERS[1]]
        mx = float((self._seam[0, 0] + self._seam[-1, 0]) / 2)
        my = float(np.interp(mx, self._seam[:, 0], self._seam[:, 1]))
        inner_half = max(float(self._seam[-1, 0] - self._seam[0, 0]) / 2, 2.0)
        mouth_half = max(float(corner_r[0] - corner_l[0]) / 2, inner_half)
        self._mouth = (mx, my)
        self.ref_gap = float(ref_gap.max()) if ref_gap.size else 0.0

        # Sharp seam between the lips, soft across the cheeks (skin stretches, lips part).
        dist_x = np.abs(grid_x - mx) / inner_half
        sigma = 0.6 + (0.07 * fh - 0.6) * _smoothstep(0.85, 1.5, dist_x)
        below = 0.5 * (1 + np.tanh((grid_y - seam_y[None, :]) / (2 * sigma)))  # 0 above the seam, 1 below

        # Lower-face region that follows the jaw: inside the face oval (softened), less towards
        # the jaw angles, nothing above the nose.
        oval = np.zeros((h, w), dtype=np.float32)
        cv2.fillPoly(oval, [np.round(pts[list(FACE_OVAL)]).astype(np.int32)], (1.0,))
        oval = np.asarray(cv2.GaussianBlur(oval, (0, 0), 0.05 * fh), dtype=np.float32)
        across = 1 - 0.6 * np.clip(np.abs(grid_x - mx) / (0.5 * fw), 0, 1) ** 2
        nose_y = float(pts[NOSE_TIP, 1])
        jaw_region = oval * across * _smoothstep(nose_y, my, grid_y)
        self._jaw_region = jaw_region
        upper_lip = (
            np.exp(-(((grid_x - mx) / (1.1 * mouth_half)) ** 4)) * np.exp(-(((grid_y - my) / (0.12 * fh)) ** 2))
        ).astype(np.float32)
        self._upper_lip = upper_lip
        # The lower lip's middle drops fully, its corners (held by the cheeks) about a third; lower
        # down the whole jaw drops, so the skin under the corners stretches.
        lens = 0.35 + 0.65 * np.clip(1 - dist_x**2, 0, 1)
        self._lens = np.interp(self._seam[:, 0], xs, lens[0]).astype(np.float32)
        depth = _smoothstep(0.0, 0.25 * fh, grid_y - seam_y[None, :])
        drop = jaw_region * (lens + (1 - lens) * depth)
        # Unit: 1 px of lower-lip drop at the middle.
        self._jaw = _trim(None, (-below * drop + _UPPER_LIP_LIFT * (1 - below) * upper_lip * lens).astype(np.float32))

        # Close the reference gap: each lip moves half the gap towards the seam.
        # The inner-lip landmarks sit inside the visible teeth, so the visible gap is wider and
        # longer than theirs: close _CLOSE_GAIN x their gap, tapering to the outer corners.
        span_x = np.concatenate([[corner_l[0]], self._seam[:, 0], [corner_r[0]]])
        span_gap = np.concatenate([[0.0], _CLOSE_GAIN * self._ref_gaps + 0.6 * (self._ref_gaps > 0.5), [0.0]])
        visible_gap = np.interp(xs, span_x, span_gap, left=0.0, right=0.0).astype(np.float32)
        near_seam = np.exp(-(((grid_y - seam_y[None, :]) / (0.1 * fh)) ** 2))
        # A hard step at the seam (not the jaw's soft one): every output row samples lip, none the
        # teeth between them, so pressed lips leave no white sliver.
        side = np.where(grid_y >= seam_y[None, :], 1.0, -1.0)
        close_dy = (visible_gap[None, :] / 2) * near_seam * side
        self._close = _trim(None, close_dy.astype(np.float32))

        lips = np.exp(-(((grid_x - mx) / (1.4 * mouth_half)) ** 2) - ((grid_y - my) / (0.15 * fh)) ** 2)
        self._wide = _trim((-0.14 * (grid_x - mx) * lips).astype(np.float32), None)
        self._round = _trim(
            (0.22 * (grid_x - mx) * lips).astype(np.float32), (-0.10 * (grid_y - my) * lips).astype(np.float32)
        )
        lower_lip = np.exp(-(((grid_x - mx) / mouth_half) ** 2) - ((grid_y - (my + 0.05 * fh)) / (0.05 * fh)) ** 2)
        self._tuck = _trim(None, (0.03 * fh * below * lower_lip).astype(np.float32))

        blink = np.zeros((h, w), dtype=np.float32)
        for eye in EYES:
            blink += self._blink_field(pts, eye, grid_x, grid_y)
        self._blink = _trim(None, blink)

        # Head motion: rigid inside an ellipse around the head, fading to zero at the crop's edge.
        cx, cy = (left + right) / 2 - x0, (top + bottom) / 2 - y0 - 0.1 * fh
        radius = np.sqrt(((grid_x - cx) / (0.8 * fw)) ** 2 + ((grid_y - cy) / (0.85 * fh)) ** 2)
        edge = np.minimum(np.minimum(grid_x, w - 1 - grid_x), np.minimum(grid_y, h - 1 - grid_y))
        falloff = (1 - _smoothstep(1.0, 1.7, radius)) * _smoothstep(0.0, 0.15 * fh, edge)
        self._pivot = (float(pts[CHIN, 0]), float(pts[CHIN, 1] + 0.3 * fh))
        self._head_f = falloff.astype(np.float32)
        self._head_rx = (falloff * (grid_y - self._pivot[1])).astype(np.float32)
        self._head_ry = (-falloff * (grid_x - self._pivot[0])).astype(np.float32)
        self._teeth = not self.parted  # closed reference: paint a hint of teeth when the jaw opens

    @staticmethod
    def _blink_field(
        pts: FloatArray, eye: tuple[int, int, tuple[int, ...], tuple[int, ...]], gx: FloatArray, gy: FloatArray
    ) -> FloatArray:
        c1, c2, up_idx, low_idx = eye
        corners = pts[[c1, c2]]
        up = np.vstack([corners, pts[list(up_idx)]])
        low = np.vstack([corners, pts[list(low_idx)]])
        up, low = up[np.argsort(up[:, 0])], low[np.argsort(low[:, 0])]
        width = float(abs(corners[1, 0] - corners[0, 0]))
        x = gx[0]
        y_up = np.interp(x, up[:, 0], up[:, 1])
        y_low = np.interp(x, low[:, 0], low[:, 1])
        inside = (x > up[0, 0]) & (x < up[-1, 0])
        y_low = np.where(inside, np.maximum(y_low, y_up), y_up)
        y_brow = y_up - 0.45 * width
        y_shut = y_up + 0.75 * (y_low - y_up)
        y_end = y_low + 0.35 * width
        ratio = (y_up - y_brow) / np.maximum(y_shut - y_brow, 1e-3) - 1.0
        upper = np.where((gy >= y_brow) & (gy <= y_shut), (gy - y_brow) * ratio, 0.0)
        lower = np.where(
            (gy > y_shut) & (gy <= y_end), (y_low - y_shut) * (y_end - gy) / np.maximum(y_end - y_shut, 1e-3), 0.0
        )
        return np.where(inside[None, :], upper + lower, 0.0).astype(np.float32)

    def jaw_and_close(self, open_amount: float, closed: float, expression: float) -> tuple[float, float]:
        """Opening beyond the reference pose (0..1) and lip pressing (0..1) -> (jaw drop in px, closure
        0..1 of the gap the reference photo shows)."""
        jaw = open_amount * JAW_DROP * expression * self.face_height / (1 + _UPPER_LIP_LIFT)
        return jaw, float(np.clip(closed * 1.25 - open_amount, 0.0, 1.0))

    def render(self, frame: Image, motion: FloatArray, expression: float = 1.0) -> None:
        """Draw this face with the given motion vector into frame (in place, only inside region)."""
        jaw, close = self.jaw_and_close(float(motion[OPEN]), float(motion[CLOSED]), expression)
        roll = float(motion[ROLL])
        shift_x, shift_y = float(motion[SHIFT_X]) * self.face_height, float(motion[SHIFT_Y]) * self.face_height
        # Whole-crop sums with cv2.scaleAdd (one SIMD pass each, no temporaries); the small
        # expression fields below with numpy on their own rectangles.
        if roll or shift_x or shift_y:
            map_x = np.asarray(cv2.scaleAdd(self._head_rx, roll, self._base_x), dtype=np.float32)
            map_x = np.asarray(cv2.scaleAdd(self._head_f, -shift_x, map_x), dtype=np.float32)
            map_y = np.asarray(cv2.scaleAdd(self._head_ry, roll, self._base_y), dtype=np.float32)
            map_y = np.asarray(cv2.scaleAdd(self._head_f, -shift_y, map_y), dtype=np.float32)
        else:
            map_x, map_y = self._base_x.copy(), self._base_y.copy()
        for field, weight in (
            (self._jaw, jaw),
            (self._close, close),
            (self._wide, float(motion[WIDE]) * expression),
            (self._round, float(motion[ROUND]) * expression),
            (self._tuck, float(motion[TUCK]) * expression),
            (self._blink, float(motion[BLINK])),
        ):
            if abs(weight) < 1e-3:
                continue
            if field.dx is not None:
                map_x[field.rows, field.cols] += weight * field.dx
            if field.dy is not None:
                map_y[field.rows, field.cols] += weight * field.dy
        out = np.asarray(
            cv2.remap(self.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), dtype=np.uint8
        )
        if jaw > 0.5:
            self._paint_mouth(out, jaw, motion, roll, shift_x, shift_y, expression)
        y0, y1, x0, x1 = self.region
        frame[y0:y1, x0:x1] = out

    def _paint_mouth(
        self, out: Image, jaw: float, motion: FloatArray, roll: float, sx: float, sy: float, expression: float
    ) -> None:
        """Fill the gap the jaw opened with a dark mouth interior (and upper teeth if none are shown)."""
        seam = self._seam
        cols = np.clip(np.round(seam[:, 0]).astype(int), 0, out.shape[1] - 1)
        rows = np.clip(np.round(seam[:, 1]).astype(int), 0, out.shape[0] - 1)
        drop = jaw * self._jaw_region[rows, cols] * self._lens
        lift = _UPPER_LIP_LIFT * jaw * self._upper_lip[rows, cols] * self._lens
        # Horizontal lip motion of the seam points (wide/round), forward = minus the backward offset.
        mx, _ = self._mouth
        stretch = 1 + 0.14 * float(motion[WIDE]) * expression - 0.22 * float(motion[ROUND]) * expression
        x = mx + (seam[:, 0] - mx) * stretch
        upper = np.stack([x, seam[:, 1] - lift], axis=1)
        lower = np.stack([x, seam[:, 1] + drop], axis=1)
        # Follow the head: forward motion is minus the backward offset at the mouth.
        px, py = self._pivot
        for poly in (upper, lower):
            dx = -(roll * (poly[:, 1] - py) - sx)
            dy = -(-roll * (poly[:, 0] - px) - sy)
            poly[:, 0] += dx
            poly[:, 1] += dy
        polygon = np.vstack([upper, lower[::-1]])
        x_lo, y_lo = np.floor(polygon.min(axis=0)).astype(int) - 2
        x_hi, y_hi = np.ceil(polygon.max(axis=0)).astype(int) + 3
        x_lo, y_lo = max(x_lo, 0), max(y_lo, 0)
        x_hi, y_hi = min(x_hi, out.shape[1]), min(y_hi, out.shape[0])
        if x_hi <= x_lo or y_hi <= y_lo:
            return
        roi = out[y_lo:y_hi, x_lo:x_hi].astype(np.float32)
        mask = np.zeros(roi.shape[:2], dtype=np.float32)
        offset = np.array([x_lo, y_lo], dtype=np.float32)
        cv2.fillPoly(mask, [np.round((polygon - offset) * 16).astype(np.int32)], (1.0,), cv2.LINE_AA, 4)
        mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), 0.7), dtype=np.float32)
        alpha = min(1.0, jaw / 2.0) * mask[..., None]
        # Darker under the upper teeth, a hint of tongue towards the lower lip.
        top_y, bottom_y = float(upper[:, 1].min()) - y_lo, float(lower[:, 1].max()) - y_lo
        depth = np.clip((np.arange(roi.shape[0], dtype=np.float32) - top_y) / max(bottom_y - top_y, 1.0), 0, 1)
        colour = _MOUTH_RGB[None, :] + (_TONGUE_RGB - _MOUTH_RGB)[None, :] * (depth**2)[:, None] * 0.7
        roi = (roi * (1 - alpha) + colour[:, None, :] * alpha).astype(np.float32)
        if self._teeth:
            band = np.minimum(0.4 * (lower[:, 1] - upper[:, 1]), 0.035 * self.face_height)
            teeth = np.vstack([upper, (upper + np.stack([np.zeros_like(band), band], axis=1))[::-1]])
            tmask = np.zeros(roi.shape[:2], dtype=np.float32)
            cv2.fillPoly(tmask, [np.round((teeth - offset) * 16).astype(np.int32)], (0.95,), cv2.LINE_AA, 4)
            talpha = (tmask * mask)[..., None] * min(1.0, jaw / 2.5)
            roi = (roi * (1 - talpha) + _TEETH_RGB * talpha).astype(np.float32)
        out[y_lo:y_hi, x_lo:x_hi] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
