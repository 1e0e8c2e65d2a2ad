"""Where each person is in the picture: the class masks L-RoPE scores the video tokens against."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

BBox = tuple[float, float, float, float]  # top, left, bottom, right in pixels (rows first)
FACE_MARGIN = 0.05  # default halves leave this fraction of the edges out, as the reference does


def image_masks(height: int, width: int, persons: int, bboxes: Sequence[BBox | None] = ()) -> torch.Tensor:
    """Masks [3, height, width] for person 1, person 2 and the background of the source image.

    One person: everything is that person (the masks are then unused). Two persons: their
    bboxes, or the left and right halves (with a margin) when no bbox is given.
    """
    if persons == 1:
        return torch.ones(3, height, width)
    masks = torch.zeros(3, height, width)
    if bboxes and all(box is not None for box in bboxes):
        for index, box in enumerate(bboxes[:2]):
            assert box is not None
            # Boxes mapped onto the fitted frame may stick out of it: clamp (negative slices would wrap).
            top, bottom = (min(max(int(v), 0), height) for v in (box[0], box[2]))
            left, right = (min(max(int(v), 0), width) for v in (box[1], box[3]))
            masks[index, top:bottom, left:right] = 1
    else:
        top, bottom = int(height * FACE_MARGIN), int(height * (1 - FACE_MARGIN))
        half = width // 2
        left_lo, left_hi = int(half * FACE_MARGIN), int(half * (1 - FACE_MARGIN))
        right_lo, right_hi = int(half * FACE_MARGIN + half), int(half * (1 - FACE_MARGIN) + half)
        masks[0, top:bottom, left_lo:left_hi] = 1
        masks[1, top:bottom, right_lo:right_hi] = 1
    masks[2] = (masks[0] + masks[1] <= 0).float()
    return masks


def cover_resize(images: torch.Tensor, height: int, width: int, mode: str = "nearest") -> torch.Tensor:
    """Scale [N, C, H, W] to cover height x width (aspect kept), then centre-crop to it."""
    src_h, src_w = images.shape[-2:]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = math.ceil(scale * src_h), math.ceil(scale * src_w)
    resized = F.interpolate(images, size=(new_h, new_w), mode=mode)
    top = round((new_h - height) / 2.0)
    left = round((new_w - width) / 2.0)
    return resized[..., top : top + height, left : left + width]


def latent_masks(masks: torch.Tensor, height: int, width: int, latent_h: int, latent_w: int) -> torch.Tensor:
    """Source-image masks [3, H, W] -> boolean-valued float masks [3, latent_h, latent_w] of the video."""
    fitted = cover_resize(masks[None].float(), height, width)
    small = F.interpolate(fitted, size=(latent_h, latent_w), mode="nearest")[0]
    return (small > 0).float()


def token_masks(masks: torch.Tensor, tokens_h: int, tokens_w: int) -> torch.Tensor:
    """Latent masks [3, h, w] -> per-token masks [3, tokens_h * tokens_w] of one latent frame."""
    small = F.interpolate(masks[None].float(), size=(tokens_h, tokens_w), mode="nearest")[0]
    return (small > 0).float().flatten(1)
