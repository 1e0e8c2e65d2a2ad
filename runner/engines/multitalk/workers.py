"""The worker ranks of a multi-GPU render: started by rank 0 (the runner process) with torch's spawn.

Each worker joins the process group, loads its own copy of the transformer onto its GPU
(memory-mapped, block by block, in the requested precision, LoRAs merged) and serves
evaluations until rank 0 says stop (distributed.serve). Workers never read inputs,
write outputs or touch storage: rank 0 alone does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .parallel_plan import Rendezvous


@dataclass(frozen=True)
class LoadSpec:
    """Everything a rank needs to load the transformer (picklable: it crosses the spawn)."""

    model_dir: Path
    strict_geometry: bool
    precision: str  # bf16 | fp8 | int8, already resolved from auto
    loras: tuple[tuple[Path, float], ...] = ()
    offload: str = "none"  # none | model | sequential (engine.OFFLOAD_MODES)
    shard: bool = False  # FSDP-shard the blocks over all ranks (bf16 that does not fit one GPU)


def load_rank_transformer(spec: LoadSpec, device: Any) -> Any:
    """The MultiTalkTransformer of one rank for `device`: on it, or on the CPU with model offload,
    or with its blocks on the CPU (visiting the device one by one) with sequential offload."""
    import torch

    from . import model_files
    from .loader import load_transformer
    from .residency import OffloadedBlocks, ShardedBlocks, shard_block

    files = model_files.locate(spec.model_dir, spec.strict_geometry)
    if not files.ok:
        raise RuntimeError("model files missing or mismatched: " + "; ".join(files.problems))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    target = device if spec.offload == "none" else torch.device("cpu")
    on_block = None
    if spec.shard:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))

        def on_block(name: str, block: Any) -> None:
            shard_block(block, mesh)

    transformer = load_transformer(
        files, dtype, target, spec.precision, spec.loras, compute_device=device, on_block=on_block
    )
    if spec.shard:
        transformer.block_residency = ShardedBlocks(transformer.block_pairs())
    if spec.offload == "sequential":
        for name, child in transformer.wan.named_children():
            if name != "blocks":
                child.to(device)
        transformer.wan.scale_shift_table.data = transformer.wan.scale_shift_table.data.to(device)
        transformer.audio.audio_proj.to(device)
        transformer.block_residency = OffloadedBlocks(transformer.block_pairs(), device)
    return transformer


def worker_main(index: int, rendezvous: Rendezvous, spec: LoadSpec) -> None:
    """Rank index + 1 (torch.multiprocessing passes the index first)."""
    import torch

    from . import distributed

    rank = index + 1
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(rendezvous.world)})
    device = distributed.join(rendezvous, rank)
    try:
        # Model offload concerns rank 0's encoders; a worker keeps its transformer on its GPU.
        own = spec if spec.offload != "model" else replace(spec, offload="none")
        with torch.no_grad():
            transformer = load_rank_transformer(own, device)
        distributed.serve(distributed.RankState(transformer, device))
    finally:
        distributed.leave()


class WorkerPool:
    """Ranks 1..N-1 as spawned processes; close() waits for them after rank 0 said stop."""

    def __init__(self, rendezvous: Rendezvous, spec: LoadSpec) -> None:
        from torch.multiprocessing.spawn import start_processes

        self.context = start_processes(  # type: ignore[no-untyped-call]
            worker_main,
            args=(rendezvous, spec),
            nprocs=rendezvous.world - 1,
            join=False,
            start_method="spawn",
        )

    def close(self, timeout: float = 120.0) -> None:
        """Wait for every worker; a worker that failed raises here with its traceback."""
        import time

        deadline = time.monotonic() + timeout
        while not self.context.join(timeout=1.0):
            if time.monotonic() > deadline:
                for process in self.context.processes:
                    if process.is_alive():
                        process.terminate()
                raise RuntimeError(f"worker ranks did not exit within {timeout:.0f} s")
