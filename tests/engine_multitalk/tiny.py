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


# --- Tiny deterministic stand-ins for umT5, CLIP and the Wan VAE (both sides use these) ---
IMAGE_SIZE = 32  # pixels; latent 4 x 4, 2 x 2 tokens per latent frame
PROMPT = "two people talk in a studio"
NEGATIVE = "blurry"


def _fixed(shape: tuple[int, ...], offset: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=generator(offset)) * scale


def encode_text(prompt: str) -> torch.Tensor:
    import zlib

    g = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
    return torch.randn(len(prompt.split()) + 3, TEXT_DIM, generator=g)


def encode_image(image: torch.Tensor) -> torch.Tensor:
    """[1, 3, 1, H, W] -> [1, 257, 1280], depending on the frame's mean colour."""
    pooled = image.float().mean(dim=(2, 3, 4))  # 1, 3
    mix = _fixed((3, CLIP_TOKENS * CLIP_DIM), 5001, 0.5)
    base = _fixed((CLIP_TOKENS * CLIP_DIM,), 5002, 0.5)
    return torch.tanh(pooled @ mix + base).view(1, CLIP_TOKENS, CLIP_DIM)


def encode_video(video: torch.Tensor) -> torch.Tensor:
    """[1, 3, T, H, W] -> [1, 16, 1 + (T-1)/4, H/8, W/8]: causal time grouping, 8x8 pooling, channel mix."""
    video = video.float()
    first, rest = video[:, :, :1], video[:, :, 1:]
    grouped = torch.cat([first, rest.unflatten(2, (-1, 4)).mean(3)], dim=2)
    pooled = torch.nn.functional.avg_pool3d(grouped, (1, 8, 8))
    return torch.einsum("oc,bcthw->bothw", _fixed((16, 3), 5003), pooled)


def decode_latents(latents: torch.Tensor) -> torch.Tensor:
    """[1, 16, t, h, w] -> [1, 3, 1 + 4(t-1), 8h, 8w] in [-1, 1]."""
    rgb = torch.tanh(torch.einsum("oc,bcthw->bothw", _fixed((3, 16), 5004, 0.3), latents.float()))
    frames = torch.cat([rgb[:, :, :1], rgb[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)
    return frames.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)


def reference_image() -> torch.Tensor:
    """uint8 [H, W, 3] portrait stand-in."""
    return torch.randint(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), generator=generator(6001), dtype=torch.uint8)


def audio_features(persons: int, frames: int) -> list[torch.Tensor]:
    """Per-person wav2vec features at the video rate [frames, 12, 768]."""
    return [torch.randn(frames, W2V_LAYERS, W2V_DIM, generator=generator(7000 + p)) for p in range(persons)]


BBOXES = ((0.0, 0.0, 12.0, 12.0), (0.0, 16.0, 12.0, 28.0))  # top, left, bottom, right: each covers one token

# The sampling cases run through both implementations.
SAMPLING_CASES = {
    "clip_two_persons": {
        "persons": 2,
        "audio_frames": 12,
        "frame_num": 9,
        "streaming": False,
        "steps": 2,
        "shift": 7.0,
        "text_scale": 5.0,
        "audio_scale": 4.0,
        "apg": False,
        "color": 1.0,
        "seed": 42,
    },
    "streaming_one_person": {
        "persons": 1,
        "audio_frames": 14,
        "frame_num": 9,
        "motion_frames": 5,
        "streaming": True,
        "steps": 2,
        "shift": 5.0,
        "text_scale": 1.0,
        "audio_scale": 2.0,
        "apg": True,
        "apg_norm_threshold": 15.0,  # low enough that the norm clipping acts
        "color": 0.5,
        "seed": 7,
    },
}


def tiny_wav2vec_config() -> object:
    """The 2-layer wav2vec2 geometry the parity data was made with (a Wav2Vec2Config)."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )


def tiny_wav2vec() -> object:
    """A 2-layer wav2vec2 with seeded weights (a Wav2Vec2Model; typed loosely to keep transformers optional)."""
    import zlib

    from transformers import Wav2Vec2Model

    model = Wav2Vec2Model(tiny_wav2vec_config()).eval()
    state = model.state_dict()
    seeded = {}
    for key, value in state.items():
        # Seeded by name, not position: the reference ran under another transformers version.
        noise = torch.randn(value.shape, generator=generator(zlib.crc32(key.encode()) % 100_000))
        if value.ndim == 1:
            seeded[key] = (1.0 + 0.1 * noise) if key.endswith("weight") else 0.05 * noise
        else:
            fan_in = value[0].numel()
            seeded[key] = noise / fan_in**0.5
    model.load_state_dict(seeded)
    return model


def speech(seconds: float = 0.6) -> torch.Tensor:
    """A voiced-sounding test signal at 16 kHz (harmonics with a slow envelope plus a little noise)."""
    t = torch.arange(int(16000 * seconds)) / 16000
    tone = sum(torch.sin(2 * torch.pi * f * t) / (k + 1) for k, f in enumerate((140.0, 280.0, 420.0, 910.0)))
    envelope = 0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t)
    noise = 0.02 * torch.randn(t.shape, generator=generator(9999))
    return (0.2 * tone * envelope + noise).float()


# --- Wan VAE in the original layout (Wan2.1_VAE.pth key names), narrowed (same depth) ---
VAE_CONFIG = {"base_dim": 4, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2}  # converter: published depth


def seeded_vae_state() -> dict[str, torch.Tensor]:
    """Seeded weights keyed as the original Wan VAE checkpoint (key list recorded from MeiGen's WanVAE_)."""
    rows = json.loads((DATA / "reference_vae_keys.json").read_text())
    state = {}
    for i, (key, shape) in enumerate(rows):
        noise = torch.randn(shape, generator=generator(20_000 + i))
        if len(shape) <= 1:
            state[key] = 1.0 + 0.1 * noise if key.endswith("gamma") else 0.05 * noise
        else:
            fan_in = 1
            for size in shape[1:]:
                fan_in *= size
            state[key] = noise / fan_in**0.5
    return state


def vae_video() -> torch.Tensor:
    """[1, 3, 5, 16, 16] in [-1, 1]."""
    return torch.rand(1, 3, 5, 16, 16, generator=generator(21_000)) * 2 - 1


# --- InfiniteTalk (dubbing): a tiny source video and the cases run through both implementations ---
DUB_MOTION_FRAMES = 5


def source_video(frames: int) -> torch.Tensor:
    """uint8 [T, H, W, 3]: the portrait stand-in with brightness drifting frame by frame, plus grain."""
    base = reference_image().float()
    out = []
    for i in range(frames):
        grain = torch.randn(base.shape, generator=generator(6100 + i)) * 12.0
        out.append((base * (0.55 + 0.09 * i) + grain).clamp(0, 255).round().to(torch.uint8))
    return torch.stack(out)


def source_frame(video: torch.Tensor, index: int) -> torch.Tensor:
    """Frame `index` of a uint8 [T, H, W, 3] video as [3, H, W] in [-1, 1]; past the end, the last frame."""
    frame = video[min(index, video.shape[0] - 1)]
    return (frame.permute(2, 0, 1).float() / 255 - 0.5) * 2


DUBBING_CASES = {
    "dub_clip_two_persons": {
        "persons": 2,
        "audio_frames": 12,
        "source_frames": 12,
        "frame_num": 9,
        "streaming": False,
        "steps": 2,
        "shift": 7.0,
        "text_scale": 5.0,
        "audio_scale": 4.0,
        "apg": False,
        "color": 1.0,
        "seed": 42,
    },
    # 3 windows starting at source frames 0, 4 and 8; the source has 6, so the third holds its last.
    "dub_streaming_one_person": {
        "persons": 1,
        "audio_frames": 15,
        "source_frames": 6,
        "frame_num": 9,
        "motion_frames": DUB_MOTION_FRAMES,
        "streaming": True,
        "steps": 2,
        "shift": 5.0,
        "text_scale": 1.0,
        "audio_scale": 2.0,
        "apg": True,
        "apg_norm_threshold": 15.0,
        "color": 0.5,
        "seed": 7,
    },
    # 2 windows, two speakers, text + audio guidance: L-RoPE across a window boundary.
    "dub_streaming_two_persons": {
        "persons": 2,
        "audio_frames": 12,
        "source_frames": 12,
        "frame_num": 9,
        "motion_frames": DUB_MOTION_FRAMES,
        "streaming": True,
        "steps": 2,
        "shift": 7.0,
        "text_scale": 5.0,
        "audio_scale": 4.0,
        "apg": False,
        "color": 1.0,
        "seed": 3,
    },
}


def video_conditioning(frame: torch.Tensor, frame_num: int) -> torch.Tensor:
    """[1, 16, T_lat, h, w]: the tiny VAE's latents of one conditioning frame [3, H, W] followed by zeros."""
    padded = torch.cat([frame[None, :, None], frame.new_zeros(1, 3, frame_num - 1, *frame.shape[1:])], dim=2)
    return encode_video(padded)


def forward_source_frame() -> torch.Tensor:
    """[3, 64, 64] in [-1, 1]: the conditioning frame of the dubbing forward (the forward's latent grid)."""
    return torch.rand(3, 8 * LAT_H, 8 * LAT_W, generator=generator(6500)) * 2 - 1
