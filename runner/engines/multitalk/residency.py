"""Where the transformer blocks' weights live between uses: streamed from the CPU, or FSDP-sharded.

The forward pass asks for block i just before running it (enter) and lets go of it just
after (leave):

- OffloadedBlocks (sequential offload): the blocks live on the CPU and visit the GPU one at a time.
- ShardedBlocks (FSDP2): each rank holds 1/N of every block (torch.distributed.fsdp.fully_shard,
  applied as each block is loaded); enter all-gathers the whole block, leave frees it again,
  and the all-gather of block i+1 runs while block i computes. Every rank runs the same
  blocks in the same order (CFG groups evaluate equally many branches, TeaCache decides
  from the timestep alone), so the world-wide all-gathers always match.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


class BlockResidency(Protocol):
    def enter(self, index: int) -> None: ...

    def leave(self, index: int) -> None: ...


class OffloadedBlocks:
    def __init__(self, pairs: list[tuple[nn.Module, nn.Module]], device: torch.device) -> None:
        self.pairs, self.device = pairs, device

    def enter(self, index: int) -> None:
        for module in self.pairs[index]:
            module.to(self.device, non_blocking=True)

    def leave(self, index: int) -> None:
        for module in self.pairs[index]:
            module.to("cpu")


def shard_block(block: nn.Module, mesh: Any) -> None:
    """FSDP2-shard one block's parameters over `mesh` (dim-0 chunks; the full tensors are freed)."""
    from torch.distributed.fsdp import fully_shard

    fully_shard(block, mesh=mesh, reshard_after_forward=True)


class ShardedBlocks:
    """Explicit unshard/reshard of FSDP2 blocks (our forward calls block parts, not block.forward)."""

    def __init__(self, pairs: list[tuple[nn.Module, nn.Module]]) -> None:
        self.pairs: list[tuple[Any, Any]] = pairs  # FSDPModule instances after fully_shard
        self._pending: dict[int, list[Any]] = {}

    def _unshard(self, index: int) -> None:
        if index < len(self.pairs) and index not in self._pending:
            self._pending[index] = [module.unshard(async_op=True) for module in self.pairs[index]]

    def enter(self, index: int) -> None:
        self._unshard(index)
        for handle in self._pending.pop(index):
            if handle is not None:
                handle.wait()
        self._unshard(index + 1)  # prefetch: overlaps the next all-gather with this block's compute

    def leave(self, index: int) -> None:
        for module in self.pairs[index]:
            module.reshard()

    def finish(self) -> None:
        """Drop a prefetch past the last block run (TeaCache may stop early)."""
        for index, handles in list(self._pending.items()):
            for handle in handles:
                if handle is not None:
                    handle.wait()
            for module in self.pairs[index]:
                module.reshard()
        self._pending.clear()
