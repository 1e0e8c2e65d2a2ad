"""Colour matching to the reference image in Lab space (long videos drift in colour otherwise)."""

from __future__ import annotations

import numpy as np
import torch
from skimage import color


def match_colors(video: torch.Tensor, reference: torch.Tensor, strength: float) -> torch.Tensor:
    """Per frame, move the Lab mean/std of video [3, T, H, W] towards reference [3, H, W]; both in [-1, 1]."""
    if strength <= 0.0:
        return video
    if strength > 1.0:
        raise ValueError(f"colour-match strength must be in [0, 1], got {strength}")
    frames = np.clip((video.permute(1, 2, 3, 0).cpu().double().numpy() + 1.0) / 2.0, 0.0, 1.0)
    ref = np.clip((reference.permute(1, 2, 0).cpu().double().numpy() + 1.0) / 2.0, 0.0, 1.0)
    ref_lab = color.rgb2lab(ref)
    ref_mean, ref_std = ref_lab.mean(axis=(0, 1)), ref_lab.std(axis=(0, 1))
    lab = color.rgb2lab(frames)  # T, H, W, 3
    mean = lab.mean(axis=(1, 2), keepdims=True)
    std = lab.std(axis=(1, 2), keepdims=True)
    safe = np.where(std == 0, 1.0, std)
    matched = np.where(std == 0, ref_mean, (lab - mean) * (ref_std / safe) + ref_mean)
    rgb = np.clip(color.lab2rgb(matched), 0.0, 1.0)
    blended = (1 - strength) * frames + strength * rgb
    out = torch.from_numpy(blended * 2.0 - 1.0).permute(3, 0, 1, 2)
    return out.to(device=video.device, dtype=video.dtype).contiguous()
