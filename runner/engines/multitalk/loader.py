"""Load MultiTalk's models from the model cache: memory-mapped safetensors, one tensor at a time.

Nothing here holds a second full copy of the 14B weights: tensors are read from the
memory-mapped shard, cast to the target dtype, and placed on the target device one by one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from .assemble import build_adapter, build_wan
from .model_files import ModelFiles, safetensors_header
from .quantization import quantize_block, quantize_config
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


class Overlay(Mapping[str, torch.Tensor]):
    """`base` with the keys of `top` replaced by top's tensors (both read on access)."""

    def __init__(self, base: Mapping[str, torch.Tensor], top: Mapping[str, torch.Tensor]) -> None:
        self.base, self.top = base, top
        unknown = sorted(set(top) - set(base))
        if unknown:
            raise ValueError(f"the audio weights hold Wan keys the base model lacks: {unknown[0]}")

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.top[key] if key in self.top else self.base[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


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
    files: ModelFiles,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    precision: str = "bf16",
    loras: Sequence[tuple[Path, float]] = (),
    compute_device: torch.device | None = None,
    on_block: Callable[[str, nn.Module], None] | None = None,
    audio_file: Path | None = None,
) -> MultiTalkTransformer:
    """Wan2.1-I2V transformer (either layout) + audio adapter from multitalk.safetensors (or `audio_file`:
    InfiniteTalk's infinitetalk.safetensors for dubbing).

    Block by block: read (memory-mapped), cast, merge the LoRAs, quantise to `precision`;
    so host RAM holds one block at most and the GPU never the whole model in bf16.
    `compute_device` (default: `device`) decides the fp8 flavour when loading for offload;
    `on_block` sees each finished block last (FSDP sharding).

    Wan keys (original naming) in `audio_file` replace the base model's, as InfiniteTalk's
    loader does (it updates one state dict with the shards, then with infinitetalk.safetensors);
    multitalk.safetensors keeps ignoring them, as before.
    """
    audio_file = audio_file or files.multitalk
    if files.transformer_dir is None or audio_file is None:
        raise FileNotFoundError("; ".join(files.problems) or "transformer or audio weights not found")
    raw = LazyTensors(files.transformer_files)
    base_keys = {key: shape for key, shape in raw.shapes().items() if audio_key(key) is None}
    overrides: dict[str, list[int]] = {}
    if audio_file != files.multitalk:
        overrides = {k: v["shape"] for k, v in safetensors_header(audio_file).items() if audio_key(k) is None}
    if files.transformer_format == "original":
        config = wan_config_from_original(json.loads((files.transformer_dir / "config.json").read_text()))
        # The later file wins for a key both hold.
        wan_state: Mapping[str, torch.Tensor] = LazyTensors(
            [*files.transformer_files, *([audio_file] if overrides else [])],
            original_key_map({**base_keys, **overrides}),
        )
    else:
        config = {
            k: v
            for k, v in json.loads((files.transformer_dir / "config.json").read_text()).items()
            if not k.startswith("_")
        }
        wan_state = LazyTensors(files.transformer_files, {k: k for k in base_keys})
        if overrides:
            wan_state = Overlay(wan_state, LazyTensors([audio_file], original_key_map(overrides)))
    audio_names = {key: audio_key(key) for key in safetensors_header(audio_file)}
    audio_state = LazyTensors([audio_file], {k: v for k, v in audio_names.items() if v is not None})
    deltas = [(LoraDeltas.read(path), scale) for path, scale in loras]
    config_q = quantize_config(precision, compute_device or torch.device(device))
    if config_q is not None and torch.device(device).type == "cpu":
        return_freed_memory_eagerly()

    def finish_block(name: str, block: nn.Module) -> None:
        if name.startswith("blocks."):  # LoRAs target the Wan layers (diffusers names)
            for lora, scale in deltas:
                lora.merge(block, name, scale)
        quantize_block(block, config_q)
        if on_block is not None:
            on_block(name, block)

    wan = build_wan(config, wan_state, dtype, device, finish_block)
    for lora, scale in deltas:
        lora.merge(wan, "", scale, skip_prefix="blocks.")
        lora.check_all_merged()
    adapter = build_adapter(wan.config, audio_state, dtype, device, finish_block)
    return MultiTalkTransformer(wan, adapter)


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
EAGER_MMAP_BYTES = 1 << 20


def return_freed_memory_eagerly() -> None:
    """Quantising on the CPU makes a few fp32 temporaries per layer; glibc's adaptive threshold
    would serve them from its heap and keep the freed pages, so the process would end up
    holding about the bf16 size again. A fixed 1 MiB mmap threshold hands them back on free
    (measured: benchmarks/multitalk_load_memory.py). No-op without glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(M_MMAP_THRESHOLD, EAGER_MMAP_BYTES)
    except (OSError, AttributeError):
        return


@dataclass
class LoraDeltas:
    """One Wan LoRA file (original, kohya or diffusers naming): layer name -> (down, up, up bias)."""

    path: Path
    layers: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
    merged: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, path: Path) -> LoraDeltas:
        from diffusers.loaders import WanLoraLoaderMixin
        from safetensors.torch import load_file

        state = WanLoraLoaderMixin.lora_state_dict(load_file(str(path)))
        layers = {}
        for key in [k for k in state if k.endswith(".lora_A.weight")]:
            name = key.removeprefix("transformer.").removesuffix(".lora_A.weight")
            layers[name] = (
                state[key],
                state[f"transformer.{name}.lora_B.weight"],
                state.get(f"transformer.{name}.lora_B.bias"),
            )
        if not layers:
            raise ValueError(f"{path.name}: no LoRA layers found")
        return cls(path, layers)

    def merge(self, module: nn.Module, prefix: str, scale: float, skip_prefix: str | None = None) -> int:
        """Add scale * B @ A into the layers of `module` (named `prefix` in the transformer)."""
        count = 0
        for local, layer in module.named_modules():
            name = f"{prefix}.{local}" if prefix and local else (prefix or local)
            if name not in self.layers or (skip_prefix and name.startswith(skip_prefix)):
                continue
            down, up, bias = self.layers[name]
            weight = layer.weight
            with torch.no_grad():
                delta = up.to(weight.device, torch.float32) @ down.to(weight.device, torch.float32)
                weight.copy_((weight.float() + scale * delta).to(weight.dtype))
                if bias is not None and layer.bias is not None:
                    layer.bias.copy_(
                        (layer.bias.float() + scale * bias.to(layer.bias.device).float()).to(layer.bias.dtype)
                    )
            self.merged.add(name)
            count += 1
        return count

    def check_all_merged(self) -> None:
        unknown = sorted(set(self.layers) - self.merged)
        if unknown:
            raise ValueError(f"{self.path.name}: LoRA targets {unknown[0]}, which the transformer does not have")


def merge_lora(transformer: MultiTalkTransformer, path: Path, scale: float) -> int:
    """Add scale * B @ A of a Wan LoRA (original, kohya or diffusers naming) into the weights; returns layers merged."""
    lora = LoraDeltas.read(path)
    merged = lora.merge(transformer.wan, "", scale)
    lora.check_all_merged()
    return merged
