"""How N ranks share one MultiTalk render: CFG groups x sequence-parallel groups (pure, no torch).

The world of N ranks is split into `cfg` groups of `sp` consecutive ranks. Each group
evaluates its share of the guidance branches (cond / drop_text / uncond, or cond /
drop_audio); inside a group the video tokens are split over its ranks (Ulysses sequence
parallelism). CFG parallelism needs no communication inside the transformer, so it is
preferred whenever the branches divide evenly over the groups; uneven CFG groups would
leave ranks idle, so they are never planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_RANKS = 8
DEFAULT_ADDR = "127.0.0.1"  # every rank is in one pod
DEFAULT_PORT = 29500  # torch.distributed's customary port


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of one pod meet: torch's WORLD_SIZE, MASTER_ADDR and MASTER_PORT."""

    world: int = 1
    addr: str = DEFAULT_ADDR
    port: int = DEFAULT_PORT
    device_type: str = "cuda"  # cuda: NCCL, one GPU per rank; cpu: gloo (development, tests)

    @property
    def backend(self) -> str:
        return "nccl" if self.device_type == "cuda" else "gloo"

    @classmethod
    def from_env(cls, env: Mapping[str, str], device_type: str) -> Rendezvous:
        """The rank environment the Job sets (absent: one rank); a bad value names its variable."""
        if env.get("RANK") not in (None, "", "0") or env.get("LOCAL_RANK") not in (None, "", "0"):
            raise ValueError(
                "RANK/LOCAL_RANK are set: the runner starts its own ranks from WORLD_SIZE; "
                "run it once per pod, not under torchrun"
            )
        world = _int(env, "WORLD_SIZE", 1, 1, MAX_RANKS)
        port = _int(env, "MASTER_PORT", DEFAULT_PORT, 1, 65535)
        addr = env.get("MASTER_ADDR") or DEFAULT_ADDR
        return cls(world=world, addr=addr, port=port, device_type=device_type)


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; use {low}..{high}") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range; use {low}..{high}")
    return value


@dataclass(frozen=True)
class ParallelPlan:
    """cfg groups of sp ranks each; rank r is in group r // sp, at position r % sp."""

    cfg: int = 1
    sp: int = 1

    @property
    def world(self) -> int:
        return self.cfg * self.sp

    def group_of(self, rank: int) -> int:
        return rank // self.sp

    def group_ranks(self, group: int) -> list[int]:
        return list(range(group * self.sp, (group + 1) * self.sp))

    def branches_of(self, group: int, branches: tuple[str, ...]) -> tuple[str, ...]:
        """The guidance branches group `group` evaluates: every cfg-th, in the sampler's order."""
        return branches[group :: self.cfg]

    def describe(self) -> str:
        return f"{self.world} ranks: {self.cfg} CFG group(s) x {self.sp} sequence-parallel rank(s)"


def plan_layout(world: int, branches: int) -> ParallelPlan:
    """The layout for `world` ranks and `branches` model evaluations per step.

    cfg = branches when that divides the world (3 evaluations on 3 or 6 ranks, 2 on any even
    world), else 1; the rest of the ranks split the sequence.
    """
    if not 1 <= world <= MAX_RANKS:
        raise ValueError(f"world size must be 1..{MAX_RANKS}, got {world}")
    if branches < 1:
        raise ValueError(f"need at least one guidance branch, got {branches}")
    cfg = branches if world % branches == 0 else 1
    return ParallelPlan(cfg=cfg, sp=world // cfg)


def split_sizes(total: int, parts: int) -> list[int]:
    """`total` items over `parts` ranks as evenly as possible, the first ranks one larger."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def split_offsets(total: int, parts: int) -> list[int]:
    """Start index of each rank's range for split_sizes(total, parts)."""
    offsets, start = [], 0
    for size in split_sizes(total, parts):
        offsets.append(start)
        start += size
    return offsets


def sequence_parallel_bytes(
    tokens: int, heads: int, head_dim: int, blocks: int, sp: int, rank: int, element_bytes: int, persons: int
) -> int:
    """Bytes rank `rank` of an sp group sends in one transformer evaluation (what SequenceParallel counts).

    Per block: three all-to-alls (q, k, v: tokens -> heads) and one back (heads -> tokens),
    each sending the rank's tokens x the other ranks' heads; with two persons a ring
    all-reduce of the [tokens, 3] fp32 L-RoPE map. After the blocks, a ring all-gather of
    the output (tokens x 64 channels, padded to the longest range).
    """
    if sp == 1:
        return 0
    token_sizes, head_sizes = split_sizes(tokens, sp), split_sizes(heads, sp)
    mine_tokens, mine_heads = token_sizes[rank], head_sizes[rank]
    to_heads = mine_tokens * (heads - mine_heads) * head_dim
    to_tokens = mine_heads * (tokens - mine_tokens) * head_dim
    per_block = (3 * to_heads + to_tokens) * element_bytes
    if persons == 2:
        per_block += 2 * (sp - 1) * (tokens * 3) // sp * 4
    gather = (sp - 1) * max(token_sizes) * OUTPUT_CHANNELS * element_bytes
    return blocks * per_block + gather


OUTPUT_CHANNELS = 64  # proj_out: 16 latent channels x patch 1 x 2 x 2
