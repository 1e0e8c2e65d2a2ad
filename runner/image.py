"""Portrait decoding: format and pixel bounds checked from the header, then fitted to the frame.

Every Pillow call on the user's bytes runs under errors.decoding: a JPEG cut inside its
header (OSError "Truncated File Read"), a garbled PNG chunk (ValueError) ... are
InvalidInput (exit 3) naming the field, never a retry.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from multitalk.runner.engines.base import Image as ImageArray
from multitalk.runner.errors import InvalidInput, decoding
from multitalk.runner.request import Box, box_text

FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}
MAX_PIXELS = 40_000_000  # 40 MP: larger headers are refused before any pixel is decoded
MIN_SIDE = 16
# A face box may reach this far past an image edge (a fraction of that side): detectors'
# boxes overhang a face cut by the edge. Anything further is a box for another picture.
BBOX_OVERHANG = 0.1
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own guard, in case a header lies about its size


def _open(data: bytes, field: str) -> Image.Image:
    """The picture with its header parsed and bounded; no pixel decoded yet."""
    if not data:
        raise InvalidInput("is empty (0 bytes); expected a jpeg, png or webp image", field)
    with (
        decoding(field, "is a corrupt image file: its header cannot be read"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=list(FORMATS))  # reads the header only
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidInput(
                f"is too large; at most {MAX_PIXELS // 1_000_000} megapixels are accepted ({exc})", field
            ) from exc
        except UnidentifiedImageError as exc:
            raise InvalidInput(
                "is not a readable jpeg, png or webp image (unknown format or no valid header)", field
            ) from exc
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise InvalidInput(f"is {w}x{h} pixels; at most {MAX_PIXELS // 1_000_000} megapixels are accepted", field)
    if min(w, h) < MIN_SIDE:
        raise InvalidInput(f"is {w}x{h} pixels; each side must be at least {MIN_SIDE} pixels", field)
    return img


def load_portrait(data: bytes, field: str, width: int, height: int) -> ImageArray:
    """Decode, honour EXIF orientation, scale and centre-crop to width x height RGB."""
    img = _open(data, field)
    with decoding(field, f"is a corrupt {FORMATS.get(img.format or '', 'image')} file"):
        img.load()
        upright: Image.Image = ImageOps.exif_transpose(img) or img
        rgb = upright.convert("RGB")
    fitted = ImageOps.fit(rgb, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return np.asarray(fitted, dtype=np.uint8).copy()


def upright_size(data: bytes, field: str) -> tuple[int, int]:
    """Width and height of the picture after its EXIF orientation (what load_portrait fits), from the header."""
    with _open(data, field) as img:
        width, height = img.size
        with decoding(field, "has corrupt EXIF data"):
            orientation = img.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def check_bbox(box: Box, size: tuple[int, int], field: str) -> None:
    """A speaker's box must cover part of the picture and stay within BBOX_OVERHANG of its edges.

    The request model already holds top < bottom, left < right and no negative values.
    """
    width, height = size
    top, left, bottom, right = box
    where = (
        f"the image is {width}x{height} pixels (width x height, after EXIF orientation) and bbox is "
        "[top, left, bottom, right] in its pixels, rows first"
    )
    if top >= height or left >= width:
        raise InvalidInput(f"{box_text(box)} lies outside the image: {where}", field)
    if bottom > height * (1 + BBOX_OVERHANG) or right > width * (1 + BBOX_OVERHANG):
        raise InvalidInput(
            f"{box_text(box)} reaches far past the image: {where}; a box may overhang an edge by at most "
            f"{BBOX_OVERHANG:.0%} of that side",
            field,
        )


def fitted_box(box: Box, source: tuple[int, int], target: tuple[int, int]) -> Box:
    """A [top, left, bottom, right] box in source pixels, in pixels of the frame load_portrait makes
    (scaled to cover the frame, centre-cropped); parts may fall outside the frame."""
    (sw, sh), (tw, th) = source, target
    scale = max(tw / sw, th / sh)
    off_x, off_y = (sw * scale - tw) / 2, (sh * scale - th) / 2
    top, left, bottom, right = box
    return (top * scale - off_y, left * scale - off_x, bottom * scale - off_y, right * scale - off_x)
