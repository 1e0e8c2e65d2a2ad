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
