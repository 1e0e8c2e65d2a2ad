"""Build the MultiTalk denoiser from state dicts without ever holding two copies of the weights.

Modules are created on the meta device and the (memory-mapped) tensors are assigned in
place, cast to the target dtype one tensor at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from torch import nn

from .audio_adapter import MultiTalkAudioAdapter
from .transformer import MultiTalkTransformer
from .weights import adapter_config


def _assign(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    what: str,
    device: torch.device | str = "cpu",
) -> None:
    expected = module.state_dict(keep_vars=True)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{what}: missing keys {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})"
        )
    cast = {}
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"{what}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
        cast[key] = value.to(device, dtype) if value.is_floating_point() else value.to(device)
    module.load_state_dict(cast, strict=True, assign=True)


def build_wan(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> WanTransformer3DModel:
    with torch.device("meta"):
        wan = WanTransformer3DModel(**config)
    _assign(wan, state_dict, dtype, "transformer", device)
    # The RoPE tables are non-persistent buffers: recompute them off the meta device.
    with torch.device(device):
        wan.rope = type(wan.rope)(wan.rope.attention_head_dim, wan.rope.patch_size, wan.rope.max_seq_len)
    return wan.eval()


def build_adapter(
    wan_config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> MultiTalkAudioAdapter:
    with torch.device("meta"):
        adapter: MultiTalkAudioAdapter = MultiTalkAudioAdapter(**adapter_config(wan_config, state_dict))
    _assign(adapter, state_dict, dtype, "audio adapter", device)
    adapter.eval()
    return adapter


def build_transformer(
    wan_config: Mapping[str, Any],
    wan_state: Mapping[str, torch.Tensor],
    audio_state: Mapping[str, torch.Tensor],
    dtype: torch.dtype = torch.bfloat16,
) -> MultiTalkTransformer:
    return MultiTalkTransformer(build_wan(wan_config, wan_state, dtype), build_adapter(wan_config, audio_state, dtype))
