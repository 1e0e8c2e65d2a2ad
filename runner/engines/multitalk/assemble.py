"""Build the MultiTalk denoiser from state dicts without ever holding two copies of the weights.

Modules are created on the meta device and the (memory-mapped) tensors are assigned in
place, cast to the target dtype one tensor at a time and one block at a time; a hook sees
each block as soon as it is complete (LoRA merging, quantisation), before the next is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from torch import nn

from .audio_adapter import MultiTalkAudioAdapter
from .transformer import MultiTalkTransformer
from .weights import adapter_config

# Called with (name, module) for each block as soon as its weights are in place: LoRA merging
# and quantisation happen there, one block at a time.
BlockHook = Callable[[str, nn.Module], None]


def _assign(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    what: str,
    device: torch.device | str = "cpu",
    blocks: str | None = None,
    on_block: BlockHook | None = None,
) -> None:
    """Assign the (memory-mapped) tensors, cast one at a time, block by block.

    With `blocks` (the ModuleList's name), each block's tensors are read, assigned and
    handed to `on_block` before the next block is read; the rest of the module last.
    """
    expected = module.state_dict(keep_vars=True)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{what}: missing keys {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})"
        )

    def cast(keys: list[str], strip: str) -> dict[str, torch.Tensor]:
        out = {}
        for key in keys:
            value = state_dict[key]
            if tuple(value.shape) != tuple(expected[key].shape):
                raise ValueError(f"{what}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
            out[key[len(strip) :]] = value.to(device, dtype) if value.is_floating_point() else value.to(device)
        return out

    remaining = set(expected)
    if blocks is not None:
        for i, block in enumerate(getattr(module, blocks)):
            prefix = f"{blocks}.{i}."
            keys = sorted(k for k in remaining if k.startswith(prefix))
            block.load_state_dict(cast(keys, prefix), strict=True, assign=True)
            remaining.difference_update(keys)
            if on_block is not None:
                on_block(f"{blocks}.{i}", block)
    module.load_state_dict(cast(sorted(remaining), ""), strict=False, assign=True)


def build_wan(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    on_block: BlockHook | None = None,
) -> WanTransformer3DModel:
    with torch.device("meta"):
        wan = WanTransformer3DModel(**config)
    _assign(wan, state_dict, dtype, "transformer", device, "blocks", on_block)
    # The RoPE tables are non-persistent buffers: recompute them off the meta device.
    with torch.device(device):
        wan.rope = type(wan.rope)(wan.rope.attention_head_dim, wan.rope.patch_size, wan.rope.max_seq_len)
    return wan.eval()


def build_adapter(
    wan_config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    on_block: BlockHook | None = None,
) -> MultiTalkAudioAdapter:
    with torch.device("meta"):
        adapter: MultiTalkAudioAdapter = MultiTalkAudioAdapter(**adapter_config(wan_config, state_dict))
    _assign(adapter, state_dict, dtype, "audio adapter", device, "audio_blocks", on_block)
    adapter.eval()
    return adapter


def build_transformer(
    wan_config: Mapping[str, Any],
    wan_state: Mapping[str, torch.Tensor],
    audio_state: Mapping[str, torch.Tensor],
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    on_block: BlockHook | None = None,
) -> MultiTalkTransformer:
    wan = build_wan(wan_config, wan_state, dtype, device, on_block)
    return MultiTalkTransformer(wan, build_adapter(wan_config, audio_state, dtype, device, on_block))
