"""Tiny MultiTalk configuration, seeded weights and inputs shared by the parity tests.

The reference outputs under data/ were computed by MeiGen's own code with weights and
inputs produced by exactly these functions, so both sides see identical numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
SEED = 20251125

# Wan geometry shrunk; audio geometry (5 x 12 x 768 windows) is the published one.
DIM, FFN, HEADS, LAYERS = 64, 96, 4, 2
TEXT_DIM, FREQ_DIM, TEXT_LEN, CLIP_TOKENS, CLIP_DIM = 32, 32, 512, 257, 1280
AUDIO_OUT, AUDIO_HIDDEN, AUDIO_TOKENS = 32, 32, 4
LAT_T, LAT_H, LAT_W = 3, 8, 8  # 9 video frames of 64 x 64 pixels
FRAMES = 4 * (LAT_T - 1) + 1
WINDOW, W2V_LAYERS, W2V_DIM = 5, 12, 768

REFERENCE_CONFIG = {
    "model_type": "i2v",
    "patch_size": (1, 2, 2),
    "text_len": TEXT_LEN,
    "in_dim": 36,
    "dim": DIM,
    "ffn_dim": FFN,
    "freq_dim": FREQ_DIM,
    "text_dim": TEXT_DIM,
    "out_dim": 16,
    "num_heads": HEADS,
    "num_layers": LAYERS,
    "qk_norm": True,
    "cross_attn_norm": True,
    "eps": 1e-6,
    "audio_window": WINDOW,
    "intermediate_dim": AUDIO_HIDDEN,
    "output_dim": AUDIO_OUT,
    "context_tokens": AUDIO_TOKENS,
    "vae_scale": 4,
    "norm_input_visual": True,
    "norm_output_audio": True,
}


def generator(offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + offset)


def reference_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of the reference WanModel's state dict, in its order (recorded from it)."""
    rows = json.loads((DATA / "reference_keys.json").read_text())
    return [(key, tuple(shape)) for key, shape in rows]


def seeded_tensor(key: str, shape: tuple[int, ...], index: int) -> torch.Tensor:
    """Deterministic, well-scaled random values for one parameter."""
    noise = torch.randn(shape, generator=generator(1000 + index))
    if key.endswith("modulation"):
        return noise / shape[-1] ** 0.5
    if len(shape) == 1:
        is_scale = key.endswith("weight") and ("norm" in key or key.startswith("img_emb.proj.0") or "proj.4" in key)
        return 1.0 + 0.1 * noise if is_scale else 0.05 * noise
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    return noise / fan_in**0.5


def seeded_state_dict() -> dict[str, torch.Tensor]:
    """The shared weights, keyed as MeiGen's original-format checkpoint (Wan keys + audio keys)."""
    return {key: seeded_tensor(key, shape, i) for i, (key, shape) in enumerate(reference_shapes())}


def seeded_inputs(persons: int, offset: int = 0) -> dict[str, torch.Tensor]:
    """Noise, condition, text, CLIP tokens and per-frame audio windows for one forward pass."""
    g = generator(offset)
    return {
        "latents": torch.randn(16, LAT_T, LAT_H, LAT_W, generator=g),
        "condition": torch.randn(20, LAT_T, LAT_H, LAT_W, generator=g),
        "text": torch.randn(7, TEXT_DIM, generator=g),  # 7 real tokens; both sides pad to 512
        "text_null": torch.randn(5, TEXT_DIM, generator=g),
        "clip": torch.randn(1, CLIP_TOKENS, CLIP_DIM, generator=g),
        "audio": torch.randn(persons, FRAMES, WINDOW, W2V_LAYERS, W2V_DIM, generator=g),
        "timestep": torch.tensor([733.0]),
    }


def pad_text(text: torch.Tensor) -> torch.Tensor:
    return torch.cat([text, text.new_zeros(TEXT_LEN - text.shape[0], text.shape[1])])[None]


def two_person_masks() -> torch.Tensor:
    """Latent-grid masks [3, LAT_H, LAT_W]: person 1 top-left block, person 2 right side, rest background."""
    masks = torch.zeros(3, LAT_H, LAT_W)
    masks[0, 1:6, 0:3] = 1
    masks[1, 2:8, 4:8] = 1
    masks[2] = ((masks[0] + masks[1]) == 0).float()
    return masks
