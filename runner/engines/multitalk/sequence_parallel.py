"""Ulysses sequence parallelism for the MultiTalk transformer, on any torch.distributed backend.

Each rank of a sequence-parallel group holds a contiguous range of the video tokens
(split_sizes: uneven when the token count does not divide). Per-token work (projections,
norms, feed-forward, text cross-attention, RoPE) runs on the local range. For
self-attention an all-to-all trades the token split for a head split, so every rank sees
the whole sequence for its share of the heads (also uneven: 40 heads over 3 ranks are
14/13/13); a second all-to-all trades back. The L-RoPE reference map is a sum over heads
of per-head softmax maps, so each rank sums its own heads and one small all-reduce
([S, 3] floats) completes it on every rank.

All collectives are plain torch.distributed calls (all_to_all_single with split sizes,
all_reduce, all_gather), which gloo (CPU tests) and NCCL (GPUs) both implement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .parallel_plan import split_offsets, split_sizes


@dataclass
class SequenceParallel:
    """One rank's view of its sequence-parallel group."""

    group: Any  # a torch.distributed ProcessGroup
    rank: int  # position inside the group
    size: int
    tokens: int = 0  # total video tokens of the current forward (set by `begin`)
    sent_bytes: int = 0  # bytes this rank has sent to the others (ring algorithms for reduce/gather)

    def begin(self, tokens: int) -> tuple[int, int]:
        """Start a forward over `tokens` tokens: this rank's (offset, count)."""
        self.tokens = tokens
        return self.local_range(tokens)

    def local_range(self, tokens: int) -> tuple[int, int]:
        return split_offsets(tokens, self.size)[self.rank], split_sizes(tokens, self.size)[self.rank]

    def shard(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's token range of a full-sequence tensor."""
        offset, count = self.local_range(x.shape[dim])
        return x.narrow(dim, offset, count)

    def heads_for(self, heads: int) -> tuple[int, int]:
        return split_offsets(heads, self.size)[self.rank], split_sizes(heads, self.size)[self.rank]

    def sequence_to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S_local, H, D] (local tokens, all heads) -> [B, S, H_local, D] (all tokens, local heads)."""
        batch, _, heads, dim = x.shape
        head_sizes = split_sizes(heads, self.size)
        token_sizes = split_sizes(self.tokens, self.size)
        chunks = [part.contiguous().reshape(-1) for part in torch.split(x, head_sizes, dim=2)]
        send = torch.cat(chunks)
        mine = head_sizes[self.rank]
        recv_sizes = [batch * t * mine * dim for t in token_sizes]
        recv = send.new_empty(sum(recv_sizes))
        dist.all_to_all_single(recv, send, recv_sizes, [c.numel() for c in chunks], group=self.group)
        self._count(send.numel() - chunks[self.rank].numel(), send)
        parts = [p.view(batch, t, mine, dim) for p, t in zip(torch.split(recv, recv_sizes), token_sizes, strict=True)]
        return torch.cat(parts, dim=1)

    def heads_to_sequence(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        """[B, S, H_local, D] -> [B, S_local, H, D]: the inverse of sequence_to_heads."""
        batch, _, _, dim = x.shape
        head_sizes = split_sizes(heads, self.size)
        token_sizes = split_sizes(self.tokens, self.size)
        chunks = [part.contiguous().reshape(-1) for part in torch.split(x, token_sizes, dim=1)]
        send = torch.cat(chunks)
        local_tokens = token_sizes[self.rank]
        recv_sizes = [batch * local_tokens * h * dim for h in head_sizes]
        recv = send.new_empty(sum(recv_sizes))
        dist.all_to_all_single(recv, send, recv_sizes, [c.numel() for c in chunks], group=self.group)
        self._count(send.numel() - chunks[self.rank].numel(), send)
        parts = [
            p.view(batch, local_tokens, h, dim) for p, h in zip(torch.split(recv, recv_sizes), head_sizes, strict=True)
        ]
        return torch.cat(parts, dim=2)

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(x, group=self.group)
        self._count(2 * (self.size - 1) * x.numel() // self.size, x)
        return x

    def _count(self, elements: int, like: torch.Tensor) -> None:
        self.sent_bytes += elements * like.element_size()

    def gather(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Concatenate every rank's token range along `dim` (uneven ranges padded for all_gather)."""
        sizes = split_sizes(self.tokens, self.size)
        longest = max(sizes)
        moved = x.movedim(dim, 0)
        padded = moved.new_zeros((longest, *moved.shape[1:]))
        padded[: moved.shape[0]] = moved
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded.contiguous(), group=self.group)
        self._count((self.size - 1) * padded.numel(), padded)
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).movedim(0, dim)
