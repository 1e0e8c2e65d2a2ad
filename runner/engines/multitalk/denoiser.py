"""What the sampler calls for flow predictions: the transformer on this process, or several ranks.

A Denoiser is told once per render how many guidance branches a step has (so a parallel
one can lay out its ranks), once per window the conditioning of every branch, and then
per step evaluates the branches it is asked for. LocalDenoiser runs them one after the
other on this process; distributed.ParallelDenoiser spreads them over CFG groups and
sequence-parallel ranks.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .teacache import TeaCache
from .transformer import Conditioning, MultiTalkTransformer


class Denoiser(Protocol):
    @property
    def dtype(self) -> torch.dtype: ...

    def start_render(self, branches: int, tea_cache: float, steps: int) -> str:
        """Prepare for a render with `branches` evaluations per step; returns a description of the layout."""

    def set_window(self, conditions: dict[str, Conditioning]) -> None:
        """The conditioning of every branch for the next window's steps."""

    def __call__(
        self, latent: torch.Tensor, timestep: torch.Tensor, branches: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        """Flow [C, T, h, w] for latent [C, T, h, w] at timestep [1], per branch."""


def new_teacache(tea_cache: float, steps: int) -> TeaCache | None:
    return TeaCache(tea_cache, steps) if tea_cache > 0 else None


class LocalDenoiser:
    """All branches on this process, in the sampler's order."""

    def __init__(self, transformer: MultiTalkTransformer) -> None:
        self.transformer = transformer
        self.conditions: dict[str, Conditioning] = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def start_render(self, branches: int, tea_cache: float, steps: int) -> str:
        self.transformer.teacache = new_teacache(tea_cache, steps)
        return "1 rank"

    def set_window(self, conditions: dict[str, Conditioning]) -> None:
        self.conditions = conditions

    def __call__(
        self, latent: torch.Tensor, timestep: torch.Tensor, branches: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        return {name: evaluate(self.transformer, latent, timestep, self.conditions[name]) for name in branches}


def evaluate(
    transformer: MultiTalkTransformer, latent: torch.Tensor, timestep: torch.Tensor, cond: Conditioning
) -> torch.Tensor:
    out: torch.Tensor = transformer(latent[None].to(transformer.dtype), timestep, cond)[0]
    return out
