"""Weight precision of the transformer blocks: bf16, fp8 (e4m3) or int8 weight-only, through torchao.

torchao's quantize_ is applied to one transformer block at a time while the checkpoint
streams in (assemble.py), so neither host RAM nor the GPU ever holds the whole model in
bf16. Only the Linear layers of the 40 Wan blocks and the 40 audio blocks are quantised
(99% of the weights); embedders, the output head and the audio projection stay in the
compute dtype.

- int8: per-output-channel symmetric int8 weights, dequantised in the matmul; every GPU and the CPU.
- fp8: e4m3 weights with per-row scales. Where the GPU has fp8 tensor cores (compute
  capability >= 8.9: Ada, Hopper, Blackwell) the activations are quantised per row too and
  the matmuls run in fp8 (torchao Float8DynamicActivationFloat8Weight). The CPU (tests)
  keeps e4m3 weights and computes in its own dtype (Float8WeightOnly). Older GPUs are refused.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

FP8_MIN_CAPABILITY = (8, 9)


def fp8_support(device: torch.device) -> tuple[bool, str]:
    """(supported, how or why not) for fp8 on this device."""
    if device.type == "cpu":
        return True, "e4m3 weights, CPU compute (development and tests)"
    if device.type != "cuda":
        return False, f"no fp8 path for device type {device.type}"
    capability = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    if capability < FP8_MIN_CAPABILITY:
        return False, f"{name} has compute capability {capability[0]}.{capability[1]}; fp8 needs 8.9 or newer"
    return True, "e4m3 weights and activations, fp8 matmuls"


def supported_precisions(device: torch.device) -> dict[str, dict[str, Any]]:
    """What `check` reports: each precision, whether this device runs it, and how."""
    fp8_ok, fp8_how = fp8_support(device)
    compute = "bf16" if device.type == "cuda" else "fp32"
    return {
        "bf16": {"supported": True, "how": f"{compute} weights and compute"},
        "fp8": {"supported": fp8_ok, "how": fp8_how},
        "int8": {"supported": True, "how": f"int8 weights per output channel, {compute} compute"},
    }


def quantize_config(precision: str, device: torch.device) -> Any | None:
    """The torchao config for `precision` on `device` (None: keep the compute dtype)."""
    if precision == "bf16":
        return None
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int8WeightOnlyConfig,
        PerRow,
    )

    if precision == "int8":
        return Int8WeightOnlyConfig()
    if precision == "fp8":
        supported, why = fp8_support(device)
        if not supported:
            raise ValueError(why)
        if device.type == "cpu":
            return Float8WeightOnlyConfig()
        return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    raise ValueError(f"unknown precision {precision!r}; use bf16, fp8 or int8")


def quantize_block(module: nn.Module, config: Any | None) -> None:
    """Quantise every Linear of one block in place (its bf16 weights are freed as they are replaced)."""
    if config is None:
        return
    from torchao.quantization import quantize_

    quantize_(module, config)


def weight_bytes(module: nn.Module) -> int:
    """Bytes the module's weights take, quantised tensors counted at their stored size."""
    total = 0
    for param in module.parameters():
        inner = getattr(param, "__tensor_flatten__", None)
        if inner is not None:
            names, _ = inner()
            total += sum(getattr(param, n).numel() * getattr(param, n).element_size() for n in names)
        else:
            total += param.numel() * param.element_size()
    return total
