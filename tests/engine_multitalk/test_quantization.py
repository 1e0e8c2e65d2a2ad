"""fp8 / int8 transformer weights (torchao) on the tiny config: the error against bf16, and streamed loading.

Bounds (relative L2 error of the flow prediction against the same model in bf16, tiny
config, 1 and 2 persons): int8 weight-only <= 2% (measured 1.0%), fp8 e4m3 weights <= 8%
(measured 3.0% and 6.0%: with two persons a few L-RoPE class choices flip). For scale, bf16
itself is 0.8% from fp32 here. The figures are in docs/engines/multitalk.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
import torch

from multitalk.runner.engines.multitalk.assemble import build_transformer
from multitalk.runner.engines.multitalk.quantization import (
    quantize_block,
    quantize_config,
    supported_precisions,
    weight_bytes,
)
from multitalk.runner.engines.multitalk.transformer import MultiTalkTransformer
from multitalk.runner.engines.multitalk.weights import original_to_diffusers, split_audio, wan_config_from_original

from . import tiny
from .ranks import forward_inputs

BOUNDS = {"int8": 0.02, "fp8": 0.08}
CPU = torch.device("cpu")


def tiny_model(dtype: torch.dtype, precision: str = "bf16") -> MultiTalkTransformer:
    base, audio = split_audio(tiny.seeded_state_dict())
    config_q = quantize_config(precision, CPU)
    return build_transformer(
        wan_config_from_original(tiny.REFERENCE_CONFIG),
        original_to_diffusers(base),
        audio,
        dtype,
        on_block=lambda name, block: quantize_block(block, config_q),
    )


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def bf16_outputs() -> dict[int, torch.Tensor]:
    model = tiny_model(torch.bfloat16)
    with torch.no_grad():
        return {persons: model(*forward_inputs(persons)) for persons in (1, 2)}


@pytest.mark.parametrize("precision", ["int8", "fp8"])
@pytest.mark.parametrize("persons", [1, 2])
def test_quantised_forward_within_bound(bf16_outputs: dict[int, torch.Tensor], precision: str, persons: int) -> None:
    model = tiny_model(torch.bfloat16, precision)
    with torch.no_grad():
        out = model(*forward_inputs(persons))
    assert out.shape == bf16_outputs[persons].shape and torch.isfinite(out).all()
    error = relative_error(out, bf16_outputs[persons])
    assert 0 < error <= BOUNDS[precision], error  # 0 would mean nothing was quantised


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_blocks_are_quantised_and_smaller(precision: str) -> None:
    plain, quantised = tiny_model(torch.bfloat16), tiny_model(torch.bfloat16, precision)
    for block in [*quantised.wan.blocks, *quantised.audio.audio_blocks]:
        linears = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(type(m.weight).__name__ != "Parameter" for m in linears)
    # Embedders and the head keep the compute dtype.
    assert type(quantised.wan.proj_out.weight).__name__ == "Parameter"
    blocks_plain = sum(weight_bytes(b) for b in plain.wan.blocks)
    blocks_quantised = sum(weight_bytes(b) for b in quantised.wan.blocks)
    assert blocks_quantised < 0.6 * blocks_plain


class ReadLog(Mapping[str, torch.Tensor]):
    """A state dict that records the order in which its tensors are read."""

    def __init__(self, state: dict[str, torch.Tensor], events: list[str]) -> None:
        self.state, self.events = state, events

    def __getitem__(self, key: str) -> torch.Tensor:
        self.events.append(f"read {key}")
        return self.state[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)


def test_loading_streams_block_by_block() -> None:
    """Each block is quantised before any tensor of the next block is read: one bf16 block in memory at most."""
    base, audio = split_audio(tiny.seeded_state_dict())
    events: list[str] = []
    config_q = quantize_config("int8", CPU)

    def hook(name: str, block: torch.nn.Module) -> None:
        quantize_block(block, config_q)
        events.append(f"quantised {name}")

    wan_state = ReadLog(original_to_diffusers(base), events)
    build_transformer(wan_config_from_original(tiny.REFERENCE_CONFIG), wan_state, ReadLog(audio, events), on_block=hook)
    done = [e for e in events if e.startswith("quantised")]
    assert done == [f"quantised blocks.{i}" for i in range(tiny.LAYERS)] + [
        f"quantised audio_blocks.{i}" for i in range(tiny.LAYERS)
    ]
    current: str | None = None
    for event in events:
        if event.startswith("quantised"):
            current = None
            continue
        key = event.removeprefix("read ")
        parts = key.split(".")
        unit = f"{parts[0]}.{parts[1]}" if parts[0] in ("blocks", "audio_blocks") else None
        if unit is not None:
            assert current in (None, unit), f"{key} read while {current} was not yet quantised"
            current = unit


def test_check_reports_precisions() -> None:
    report = supported_precisions(CPU)
    assert set(report) == {"bf16", "fp8", "int8"} and all(r["supported"] for r in report.values())


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="bf16, fp8 or int8"):
        quantize_config("int4", CPU)
