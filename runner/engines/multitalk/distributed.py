"""Several ranks on one render: rank 0 drives, the other ranks serve transformer evaluations.

Rank 0 runs the whole pipeline (inputs, encoders, sampler, decoding, output). Only the
transformer evaluations are spread: at each step rank 0 broadcasts the latent and the
timestep, every CFG group evaluates its branches with its tokens split over its ranks
(sequence_parallel.SequenceParallel), and the groups' predictions come back to rank 0 in
one all-gather. Per render rank 0 broadcasts the layout and the TeaCache setting, per
window the conditioning tensors. The sampler state (noise, guidance, APG momentum) lives
on rank 0 alone, so every rank computes exactly what a single process would.

Messages are (kind, payload) tuples sent with broadcast_object_list; tensors go with
broadcast/all_gather on the rank's device (CUDA for NCCL, CPU for gloo).
"""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from .denoiser import evaluate, new_teacache
from .parallel_plan import ParallelPlan, Rendezvous, plan_layout
from .sequence_parallel import SequenceParallel
from .transformer import Conditioning, MultiTalkTransformer

CONDITION_FIELDS = ("text", "image", "condition", "audio", "masks")
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)  # one collective; a full-size window step is well under this


def join(rendezvous: Rendezvous, rank: int, timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> torch.device:
    """Join the process group as `rank`; returns this rank's device."""
    device = torch.device("cuda", rank) if rendezvous.device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        rendezvous.backend,
        init_method=f"tcp://{rendezvous.addr}:{rendezvous.port}",
        rank=rank,
        world_size=rendezvous.world,
        timeout=timeout,
    )
    return device


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass
class RankState:
    """What every rank (driver or worker) knows about the render in progress."""

    transformer: MultiTalkTransformer
    device: torch.device
    rank: int = 0
    world: int = 1
    plan: ParallelPlan = field(default_factory=ParallelPlan)
    conditions: dict[str, Conditioning] = field(default_factory=dict)
    _groups: dict[ParallelPlan, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    # --- messages -------------------------------------------------------------------------

    def exchange(self, message: tuple[str, Any] | None) -> tuple[str, Any]:
        """Rank 0 sends `message`, every rank returns it."""
        box = [message]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        received = box[0]
        assert received is not None
        return received

    def broadcast_tensors(self, tensors: list[torch.Tensor] | None) -> list[torch.Tensor]:
        """Rank 0's tensors on every rank (shapes and dtypes travel first)."""
        _, meta = self.exchange(("meta", None if tensors is None else [(t.shape, t.dtype) for t in tensors]))
        out = []
        for i, (shape, dtype) in enumerate(meta):
            if self.rank == 0 and tensors is not None:
                tensor = tensors[i].to(self.device).contiguous()
            else:
                tensor = torch.empty(shape, dtype=dtype, device=self.device)
            dist.broadcast(tensor, src=0)
            out.append(tensor)
        return out

    # --- what each message does -----------------------------------------------------------

    def start_render(self, payload: dict[str, Any]) -> None:
        self.plan = plan_layout(self.world, payload["branches"])
        groups = self._groups.get(self.plan)
        if groups is None:  # every rank creates every group, in the same order
            groups = [dist.new_group(self.plan.group_ranks(g)) for g in range(self.plan.cfg)]
            self._groups[self.plan] = groups
        sp_size = self.plan.sp
        group = self.plan.group_of(self.rank)
        self.transformer.sequence_parallel = (
            SequenceParallel(groups[group], self.rank % sp_size, sp_size) if sp_size > 1 else None
        )
        self.transformer.teacache = new_teacache(payload["tea_cache"], payload["steps"])

    def set_window(self, layout: dict[str, dict[str, int | None]], tensors: list[torch.Tensor]) -> None:
        self.conditions = {
            name: Conditioning(
                **{key: None if index is None else tensors[index] for key, index in fields.items()},  # type: ignore[arg-type]
                branch=name,
            )
            for name, fields in layout.items()
        }

    def step(self, latent: torch.Tensor, timestep: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """This rank's group evaluates its branches; rank 0 returns every branch's prediction."""
        plan = self.plan
        mine = plan.branches_of(plan.group_of(self.rank), names)
        preds = [evaluate(self.transformer, latent, timestep, self.conditions[name]) for name in mine]
        if plan.cfg == 1:
            return dict(zip(mine, preds, strict=True))
        stacked = torch.stack(preds)
        parts = [torch.empty_like(stacked) for _ in range(self.world)]
        dist.all_gather(parts, stacked)
        out: dict[str, torch.Tensor] = {}
        for g in range(plan.cfg):
            for name, pred in zip(plan.branches_of(g, names), parts[g * plan.sp], strict=True):
                out[name] = pred
        return {name: out[name] for name in names}


def pack_conditions(conditions: dict[str, Conditioning]) -> tuple[dict[str, dict[str, int | None]], list[torch.Tensor]]:
    """Branch -> field -> index into a list of the distinct tensors (branches share most of them)."""
    tensors: list[torch.Tensor] = []
    index: dict[int, int] = {}
    layout: dict[str, dict[str, int | None]] = {}
    for name, cond in conditions.items():
        fields: dict[str, int | None] = {}
        for key in CONDITION_FIELDS:
            value = getattr(cond, key)
            if value is None:
                fields[key] = None
                continue
            if id(value) not in index:
                index[id(value)] = len(tensors)
                tensors.append(value)
            fields[key] = index[id(value)]
        layout[name] = fields
    return layout, tensors


class ParallelDenoiser:
    """Rank 0's Denoiser: sends the work to every rank and takes part in it."""

    def __init__(self, state: RankState) -> None:
        if state.rank != 0:
            raise ValueError("ParallelDenoiser runs on rank 0; the other ranks run serve()")
        self.state = state

    @property
    def dtype(self) -> torch.dtype:
        return self.state.transformer.dtype

    def start_render(self, branches: int, tea_cache: float, steps: int) -> str:
        payload = {"branches": branches, "tea_cache": tea_cache, "steps": steps}
        self.state.exchange(("render", payload))
        self.state.start_render(payload)
        layout = self.state.plan.describe()
        print(f"multitalk-runner: {branches} evaluations per step on {layout}", file=sys.stderr, flush=True)
        return layout

    def set_window(self, conditions: dict[str, Conditioning]) -> None:
        layout, tensors = pack_conditions(conditions)
        self.state.exchange(("window", layout))
        self.state.set_window(layout, self.state.broadcast_tensors(tensors))

    def __call__(
        self, latent: torch.Tensor, timestep: torch.Tensor, branches: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        self.state.exchange(("step", branches))
        latent, timestep = self.state.broadcast_tensors([latent, timestep])
        return self.state.step(latent, timestep, branches)

    def stop(self) -> None:
        """Release the workers (they return from serve())."""
        self.state.exchange(("stop", None))


def serve(state: RankState) -> None:
    """A worker rank's loop: do what rank 0 says until it says stop."""
    with torch.no_grad():
        while True:
            kind, payload = state.exchange(None)
            if kind == "stop":
                return
            if kind == "render":
                state.start_render(payload)
            elif kind == "window":
                state.set_window(payload, state.broadcast_tensors(None))
            elif kind == "step":
                latent, timestep = state.broadcast_tensors(None)
                state.step(latent, timestep, payload)
            else:
                raise RuntimeError(f"rank {state.rank}: unknown message {kind!r} from rank 0")
