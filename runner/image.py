"""Portrait decoding: format and pixel bounds checked from the header, then fitted to the frame."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from multitalk.runner.engines.base import Image as ImageArray
from multitalk.runner.errors import InvalidInput

FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}
MAX_PIXELS = 40_000_000  # 40 MP: larger headers are refused before any pixel is decoded
MIN_SIDE = 16
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own guard, in case a header lies about its size


def load_portrait(data: bytes, field: str, width: int, height: int) -> ImageArray:
    """Decode, honour EXIF orientation, scale and centre-crop to width x height RGB."""
    if not data:
        raise InvalidInput("is empty (0 bytes); expected a jpeg, png or webp image", field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(FORMATS))  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(
            f"is too large; at most {MAX_PIXELS // 1_000_000} megapixels are accepted ({exc})", field
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidInput(f"is not a readable jpeg, png or webp image: {exc}", field) from exc
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise InvalidInput(f"is {w}x{h} pixels; at most {MAX_PIXELS // 1_000_000} megapixels are accepted", field)
    if min(w, h) < MIN_SIDE:
        raise InvalidInput(f"is {w}x{h} pixels; each side must be at least {MIN_SIDE} pixels", field)
    try:
        img.load()
        upright: Image.Image = ImageOps.exif_transpose(img) or img
        rgb = upright.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise InvalidInput(f"is a corrupt {FORMATS.get(img.format or '', 'image')} file: {exc}", field) from exc
    fitted = ImageOps.fit(rgb, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return np.asarray(fitted, dtype=np.uint8).copy()


def upright_size(data: bytes) -> tuple[int, int]:
    """Width and height of the picture after its EXIF orientation (what load_portrait fits), from the header."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def fitted_box(
    box: tuple[float, float, float, float], source: tuple[int, int], target: tuple[int, int]
) -> tuple[float, float, float, float]:
    """A [top, left, bottom, right] box in source pixels, in pixels of the frame load_portrait makes
    (scaled to cover the frame, centre-cropped); parts may fall outside the frame."""
    (sw, sh), (tw, th) = source, target
    scale = max(tw / sw, th / sh)
    off_x, off_y = (sw * scale - tw) / 2, (sh * scale - th) / 2
    top, left, bottom, right = box
    return (top * scale - off_y, left * scale - off_x, bottom * scale - off_y, right * scale - off_x)
