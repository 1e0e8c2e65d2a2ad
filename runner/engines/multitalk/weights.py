"""State-dict naming: MeiGen's original keys -> diffusers' Wan keys + our audio-adapter keys.

Pure dict transforms (no I/O) so they are tested on tiny checkpoints; model_files.py and
loader.py do the reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

_AUDIO_BLOCK = re.compile(r"^(?:model\.diffusion_model\.)?blocks\.(\d+)\.(audio_cross_attn|norm_x)\.(.+)$")
_AUDIO_PROJ = re.compile(r"^(?:model\.diffusion_model\.)?audio_proj\.(.+)$")


def audio_key(key: str) -> str | None:
    """Our adapter's name for a multitalk.safetensors key, or None when it is a Wan (base) key."""
    match = _AUDIO_BLOCK.match(key)
    if match:
        return f"audio_blocks.{match.group(1)}.{match.group(2)}.{match.group(3)}"
    match = _AUDIO_PROJ.match(key)
    if match:
        return f"audio_proj.{match.group(1)}"
    return None


def split_audio(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(Wan keys untouched, audio keys renamed for MultiTalkAudioAdapter)."""
    base: dict[str, torch.Tensor] = {}
    audio: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        renamed = audio_key(key)
        if renamed is None:
            base[key] = value
        else:
            audio[renamed] = value
    return base, audio


def original_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original-format Wan transformer keys -> diffusers WanTransformer3DModel keys (diffusers' own converter)."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    converted: dict[str, torch.Tensor] = convert_wan_transformer_to_diffusers(dict(state_dict))
    return converted


def is_original_layout(keys: set[str] | list[str]) -> bool:
    """Original Wan checkpoints name the self-attention `self_attn.q`; diffusers names it `attn1.to_q`."""
    return any(".self_attn.q.weight" in key for key in keys)


def wan_config_from_original(config: Mapping[str, Any]) -> dict[str, Any]:
    """Original config.json (WanModel) -> WanTransformer3DModel config for the I2V model."""
    dim = int(config["dim"])
    heads = int(config["num_heads"])
    return {
        "patch_size": tuple(config.get("patch_size", (1, 2, 2))),
        "num_attention_heads": heads,
        "attention_head_dim": dim // heads,
        "in_channels": int(config.get("in_dim", 36)),
        "out_channels": int(config.get("out_dim", 16)),
        "text_dim": int(config.get("text_dim", 4096)),
        "freq_dim": int(config.get("freq_dim", 256)),
        "ffn_dim": int(config["ffn_dim"]),
        "num_layers": int(config["num_layers"]),
        "cross_attn_norm": bool(config.get("cross_attn_norm", True)),
        "qk_norm": "rms_norm_across_heads",
        "eps": float(config.get("eps", 1e-6)),
        "image_dim": 1280,
        "added_kv_proj_dim": dim,
        "rope_max_seq_len": 1024,
    }


def adapter_config(wan_config: Mapping[str, Any], audio: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """MultiTalkAudioAdapter config from the Wan config and the audio tensors' shapes."""
    dim = int(wan_config["num_attention_heads"]) * int(wan_config["attention_head_dim"])
    proj1 = audio["audio_proj.proj1.weight"]
    proj3 = audio["audio_proj.proj3.weight"]
    output_dim = int(audio["audio_blocks.0.audio_cross_attn.kv_linear.weight"].shape[1])
    layers = len({key.split(".")[1] for key in audio if key.startswith("audio_blocks.")})
    window_later = audio["audio_proj.proj1_vf.weight"].shape[1] // (proj1.shape[1] // 5)
    return {
        "num_layers": layers,
        "dim": dim,
        "num_heads": int(wan_config["num_attention_heads"]),
        "eps": float(wan_config.get("eps", 1e-6)),
        "audio_window": 5,
        "vae_scale": int(window_later) - 5 + 1,
        "wav2vec_layers": 12,
        "wav2vec_dim": int(proj1.shape[1]) // (5 * 12),
        "intermediate_dim": int(proj1.shape[0]),
        "output_dim": output_dim,
        "context_tokens": int(proj3.shape[0]) // output_dim,
    }
