"""How far two correct fp32 implementations can drift apart: a bound derived from the reductions they run.

Our port and MeiGen's reference, or our port under two CPU kernel sets, differ only by
rounding, and rounding grows with the length of the sums a computation takes (matmul inner
dimensions, convolution windows, normalisation statistics, softmax denominators). A
reduction of length K computed in fp32, in any order, makes a relative error of rms at most
u * sqrt(K / 3) (u = 2^-24; recursive summation, the worst order). How much of that reaches
an output depends on the network after it (guidance scales, normalisations, colour
matching), so the bound is not guessed from K alone: `Rounding(simulate=True)` adds such an
error, with its K, to the result of every fp32 reduction while the computation runs again,
and the output's deviation from the plain run is the rounding error that computation can
make (Monte Carlo arithmetic). Two implementations each make one, hence a factor sqrt(2);
a second factor 2 covers the scatter of a single simulated sample. `assert_parity` checks

    rms(ours - reference) <= 2 sqrt(2) rms(simulated - ours)
    max|ours - reference| <= 2 sqrt(2) max|simulated - ours|

docs/engines/multitalk.md ("Parity bound") has the derivation, the margins measured
across CPU code paths (tests/engine_multitalk/parity_paths.py) and what the bound catches.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

UNIT_ROUNDOFF = 2.0**-24  # fp32
IMPLEMENTATIONS = math.sqrt(2.0)  # ours and the reference each round on their own
SAMPLE_SAFETY = 2.0  # one simulated sample: its rms and its largest element scatter
REPORT_ENV = "MULTITALK_PARITY_REPORT"  # JSON lines of every comparison go here (parity_paths.py)
SIMULATION_SEED = 20260101

aten = torch.ops.aten
ROUNDED = (torch.float32,)  # the model above is fp32's; float64 rounds 2^29 times finer and is left out


def _inner(a: torch.Tensor) -> int:
    return int(a.shape[-1])


def _reduced(a: torch.Tensor, out: torch.Tensor) -> int:
    return max(1, a.numel() // max(1, out.numel()))


def _convolution(a: tuple[Any, ...]) -> int:
    weight, transposed, groups = a[1], a[6], a[8]
    window = math.prod(weight.shape[2:])
    return int(weight.shape[0] // groups * window if transposed else weight.shape[1] * window)


def _attention(a: tuple[Any, ...]) -> int:
    return int(a[0].shape[-1] + 2 * a[1].shape[-2])  # q.k, the softmax denominator, probabilities x values


# Length K of the longest sum behind one output element, per aten op: (inputs, first output) -> K.
REDUCTIONS: dict[Any, Callable[[tuple[Any, ...], torch.Tensor], int]] = {
    aten.mm.default: lambda a, o: _inner(a[0]),
    aten.bmm.default: lambda a, o: _inner(a[0]),
    aten.addmm.default: lambda a, o: _inner(a[1]),
    aten.baddbmm.default: lambda a, o: _inner(a[1]),
    aten.mv.default: lambda a, o: _inner(a[0]),
    aten.dot.default: lambda a, o: _inner(a[0]),
    aten.convolution.default: lambda a, o: _convolution(a),
    aten._scaled_dot_product_flash_attention_for_cpu.default: lambda a, o: _attention(a),
    aten.native_layer_norm.default: lambda a, o: 2 * math.prod(a[1]),  # mean, then variance
    aten.native_group_norm.default: lambda a, o: 2 * (a[4] // a[6]) * a[5],
    aten._softmax.default: lambda a, o: int(a[0].shape[a[1]]),
    aten._log_softmax.default: lambda a, o: int(a[0].shape[a[1]]),
    aten.sum.dim_IntList: lambda a, o: _reduced(a[0], o),
    aten.sum.default: lambda a, o: int(a[0].numel()),
    aten.mean.dim: lambda a, o: _reduced(a[0], o),
    aten.mean.default: lambda a, o: int(a[0].numel()),
    aten.var.correction: lambda a, o: 2 * _reduced(a[0], o),
    aten.std.correction: lambda a, o: 2 * _reduced(a[0], o),
    aten.linalg_vector_norm.default: lambda a, o: _reduced(a[0], o),
    aten.avg_pool2d.default: lambda a, o: math.prod(a[1]),
    aten.avg_pool3d.default: lambda a, o: math.prod(a[1]),
    aten.cumsum.default: lambda a, o: int(a[0].shape[a[1]]),
}


class Rounding(TorchDispatchMode):
    """Counts the fp32 reductions run inside it (`total` = N, the sum of their lengths K).

    With simulate=True it also adds to each reduction's result a rounding error that a
    reduction of that length could make: Gaussian, rms u * sqrt(K / 3) times the result's
    rms, from its own seeded generator (the computation's random numbers are untouched).
    Elementwise ops are left alone: correctly rounded or within an ulp or two on every
    CPU path, they add ~u each against ~u sqrt(K) per reduction.
    """

    def __init__(self, simulate: bool = False, seed: int = SIMULATION_SEED) -> None:
        super().__init__()
        self.simulate = simulate
        self.generator = torch.Generator().manual_seed(seed)
        self.total = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        length = REDUCTIONS.get(func)
        first = out[0] if isinstance(out, tuple) else out
        if length is None or not isinstance(first, torch.Tensor) or first.dtype not in ROUNDED:
            return out
        k = length(args, first)
        self.total += k
        if not self.simulate or first.numel() == 0:
            return out
        scale = first.double().pow(2).mean().sqrt().item() * UNIT_ROUNDOFF * math.sqrt(k / 3)
        noise = torch.randn(first.shape, generator=self.generator, dtype=torch.float64) * scale
        perturbed = (first.double() + noise.to(first.device)).to(first.dtype)
        return (perturbed, *out[1:]) if isinstance(out, tuple) else perturbed


Outputs = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Run:
    """One computation run plainly and with simulated rounding, and its reduction count."""

    outputs: Outputs
    simulated: Outputs
    reductions: int


def run_with_rounding(compute: Callable[[], Outputs]) -> Run:
    """Run `compute` (deterministic, returning named fp32 tensors) plainly, then with simulated rounding."""
    with torch.no_grad(), Rounding() as count:
        outputs = {k: v.detach().clone() for k, v in compute().items()}
    with torch.no_grad(), Rounding(simulate=True):
        simulated = {k: v.detach().clone() for k, v in compute().items()}
    return Run(outputs, simulated, count.total)


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt().item())


@dataclass(frozen=True)
class Comparison:
    """One tensor of ours against the reference's; errors in units of the reference's rms."""

    name: str
    elements: int
    scale: float  # rms(reference)
    reductions: int  # N = sum of the reduction lengths the computation ran
    rms_error: float  # rms(ours - reference) / rms(reference)
    max_error: float  # max|ours - reference| / rms(reference)
    rms_bound: float
    max_bound: float

    @property
    def margin(self) -> float:
        """Worst of the two error / bound ratios: at most 1 passes."""
        return max(self.rms_error / self.rms_bound, self.max_error / self.max_bound)

    def describe(self) -> str:
        u = UNIT_ROUNDOFF
        return (
            f"{self.name}: rms error {self.rms_error / u:.0f}u (bound {self.rms_bound / u:.0f}u), worst element "
            f"{self.max_error / u:.0f}u (bound {self.max_bound / u:.0f}u = {self.max_bound * self.scale:.1e} absolute) "
            f"of the reference's rms {self.scale:.2f}, u = 2^-24, N = {self.reductions}: margin {self.margin:.2f}"
        )


def compare(
    name: str, actual: torch.Tensor, expected: torch.Tensor, simulated: torch.Tensor, reductions: int
) -> Comparison:
    """Errors of `actual` against `expected` and the bounds from `simulated` (actual under simulated rounding)."""
    if actual.shape != expected.shape or simulated.shape != expected.shape:
        shapes = f"{tuple(actual.shape)} (simulated {tuple(simulated.shape)}), reference {tuple(expected.shape)}"
        raise AssertionError(f"{name}: shape {shapes}")
    ours, reference = actual.double(), expected.double()
    scale = _rms(reference)
    if scale == 0.0 or not bool(torch.isfinite(ours).all()):
        raise AssertionError(f"{name}: non-finite output or an all-zero reference")
    rounding = simulated.double() - ours
    if reductions <= 0 or _rms(rounding) == 0.0:
        raise ValueError(f"{name}: no simulated fp32 rounding reached this output; is it computed in fp32?")
    factor = IMPLEMENTATIONS * SAMPLE_SAFETY / scale
    return Comparison(
        name=name,
        elements=reference.numel(),
        scale=scale,
        reductions=reductions,
        rms_error=_rms(ours - reference) / scale,
        max_error=float((ours - reference).abs().max().item()) / scale,
        rms_bound=_rms(rounding) * factor,
        max_bound=float(rounding.abs().max().item()) * factor,
    )


def record(result: Comparison) -> None:
    report = os.environ.get(REPORT_ENV)
    if report:
        with Path(report).open("a") as sink:
            sink.write(json.dumps({**asdict(result), "margin": result.margin}) + "\n")


def assert_parity(run: Run, name: str, expected: torch.Tensor, output: str = "output") -> Comparison:
    """Fail unless `run`'s output `output` is within the rounding bound of `expected` (`name` labels it)."""
    result = compare(name, run.outputs[output], expected, run.simulated[output], run.reductions)
    record(result)
    assert result.margin <= 1.0, result.describe()
    return result
