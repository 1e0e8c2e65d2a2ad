"""Load MultiTalk's models from the model cache: memory-mapped safetensors, one tensor at a time.

Nothing here holds a second full copy of the 14B weights: tensors are read from the
memory-mapped shard, cast to the target dtype, and placed on the target device one by one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .assemble import build_adapter, build_wan
from .model_files import ModelFiles, safetensors_header
from .transformer import MultiTalkTransformer
from .weights import audio_key, original_to_diffusers, wan_config_from_original


class LazyTensors(Mapping[str, torch.Tensor]):
    """key -> tensor read on access from memory-mapped safetensors files, optionally under new names."""

    def __init__(self, files: list[Path], rename: Mapping[str, str] | None = None) -> None:
        self._where: dict[str, tuple[Path, str]] = {}
        for path in files:
            for key in safetensors_header(path):
                self._where[key] = (path, key)
        if rename is not None:
            self._where = {rename[k]: v for k, v in self._where.items() if k in rename}
        self._handles: dict[Path, Any] = {}

    def __getitem__(self, key: str) -> torch.Tensor:
        path, name = self._where[key]
        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt", device="cpu")
        tensor: torch.Tensor = self._handles[path].get_tensor(name)
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def shapes(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for path in {p for p, _ in self._where.values()}:
            header = safetensors_header(path)
            for key, (p, name) in self._where.items():
                if p == path:
                    out[key] = header[name]["shape"]
        return out


def original_key_map(shapes: Mapping[str, list[int]]) -> dict[str, str]:
    """Original Wan key -> diffusers key, computed by running diffusers' converter on shape-only tensors."""
    placeholders = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    by_id = {id(t): key for key, t in placeholders.items()}
    converted = original_to_diffusers(placeholders)
    mapping = {}
    for new_key, tensor in converted.items():
        if id(tensor) not in by_id:
            raise ValueError(f"the converter derived {new_key} from several tensors; unsupported checkpoint")
        mapping[by_id[id(tensor)]] = new_key
    return mapping


def load_transformer(
    files: ModelFiles, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu"
) -> MultiTalkTransformer:
    """Wan2.1-I2V transformer (either layout) + MultiTalk audio adapter from multitalk.safetensors."""
    if files.transformer_dir is None or files.multitalk is None:
        raise FileNotFoundError("; ".join(files.problems) or "transformer or multitalk.safetensors not found")
    raw = LazyTensors(files.transformer_files)
    base_keys = {key: shape for key, shape in raw.shapes().items() if audio_key(key) is None}
    if files.transformer_format == "original":
        config = wan_config_from_original(json.loads((files.transformer_dir / "config.json").read_text()))
        wan_state: Mapping[str, torch.Tensor] = LazyTensors(files.transformer_files, original_key_map(base_keys))
    else:
        config = {
            k: v
            for k, v in json.loads((files.transformer_dir / "config.json").read_text()).items()
            if not k.startswith("_")
        }
        wan_state = LazyTensors(files.transformer_files, {k: k for k in base_keys})
    audio_names = {key: audio_key(key) for key in safetensors_header(files.multitalk)}
    audio_state = LazyTensors([files.multitalk], {k: v for k, v in audio_names.items() if v is not None})
    wan = build_wan(config, wan_state, dtype, device)
    adapter = build_adapter(wan.config, audio_state, dtype, device)
    return MultiTalkTransformer(wan, adapter)


def merge_lora(transformer: MultiTalkTransformer, path: Path, scale: float) -> int:
    """Add scale * B @ A of a Wan LoRA (original, kohya or diffusers naming) into the weights; returns layers merged."""
    from diffusers.loaders import WanLoraLoaderMixin
    from safetensors.torch import load_file

    state = WanLoraLoaderMixin.lora_state_dict(load_file(str(path)))
    modules = dict(transformer.wan.named_modules())
    merged = 0
    for key in [k for k in state if k.endswith(".lora_A.weight")]:
        name = key.removeprefix("transformer.").removesuffix(".lora_A.weight")
        if name not in modules:
            raise ValueError(f"{path.name}: LoRA targets {name}, which the transformer does not have")
        layer = modules[name]
        down = state[key].to(layer.weight.device, torch.float32)
        up = state[f"transformer.{name}.lora_B.weight"].to(layer.weight.device, torch.float32)
        with torch.no_grad():
            layer.weight.copy_((layer.weight.float() + scale * (up @ down)).to(layer.weight.dtype))
            bias = state.get(f"transformer.{name}.lora_B.bias")
            if bias is not None and layer.bias is not None:
                layer.bias.copy_((layer.bias.float() + scale * bias.to(layer.bias.device).float()).to(layer.bias.dtype))
        merged += 1
    if merged == 0:
        raise ValueError(f"{path.name}: no LoRA layers found")
    return merged
