"""TeaCache: skip the transformer blocks when the timestep modulation has barely moved.

Per CFG branch, the relative L1 change of the modulation input is rescaled by a fitted
polynomial and accumulated; while the sum stays under the threshold the blocks are
skipped and the residual they added last time is reused. The first `warmup_steps` and the
last step always compute. Coefficients are MultiTalk's, fitted on the modulated input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

COEFFICIENTS = {
    "480p": (2.57151496e05, -3.54229917e04, 1.40286849e03, -1.35890334e01, 1.32517977e-01),
    "720p": (8.10705460e03, 2.13393892e03, -3.72934672e02, 1.66203073e01, -4.17769401e-02),
}


@dataclass
class _Branch:
    calls: int = 0
    accumulated: float = 0.0
    previous: torch.Tensor | None = None
    residual: torch.Tensor | None = None


@dataclass
class TeaCache:
    threshold: float
    steps: int
    coefficients: tuple[float, ...] = COEFFICIENTS["480p"]
    warmup_steps: int = 5
    skipped: int = 0
    branches: dict[str, _Branch] = field(default_factory=dict)

    def reset(self) -> None:
        self.branches.clear()
        self.skipped = 0

    def run(
        self, branch: str, modulation: torch.Tensor, x: torch.Tensor, blocks: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        state = self.branches.setdefault(branch, _Branch())
        step = state.calls % self.steps
        state.calls += 1
        compute = True
        if self.warmup_steps <= step < self.steps - 1 and state.previous is not None and state.residual is not None:
            change = ((modulation - state.previous).abs().mean() / state.previous.abs().mean()).item()
            state.accumulated += float(np.polyval(self.coefficients, change))
            compute = state.accumulated >= self.threshold
        state.previous = modulation.detach().clone()
        if not compute and state.residual is not None:
            self.skipped += 1
            return x + state.residual
        state.accumulated = 0.0
        out = blocks(x)
        state.residual = (out - x).detach()
        return out
