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
    dubbing: bool = False  # InfiniteTalk's weights (a source video) instead of MultiTalk's
    persons: int = 1  # speakers: which InfiniteTalk weights (single/ or multi/)


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

    audio_file = files.audio_weights(spec.dubbing, spec.persons)
    if audio_file is None:
        raise RuntimeError("InfiniteTalk weights missing: " + "; ".join(files.dubbing_problems))
    transformer = load_transformer(
        files,
        dtype,
        target,
        spec.precision,
        spec.loras,
        compute_device=device,
        on_block=on_block,
        audio_file=audio_file,
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
    """Ranks 1..N-1 as spawned processes.

    A watchdog thread notices a worker that dies (e.g. out of memory while loading), prints its
    traceback and aborts rank 0's process group, so rank 0's pending collective fails at once
    instead of at the process-group timeout (gloo notices the closed connection by itself).
    """

    def __init__(self, rendezvous: Rendezvous, spec: LoadSpec) -> None:
        import threading

        from torch.multiprocessing.spawn import start_processes

        self.context = start_processes(  # type: ignore[no-untyped-call]
            worker_main,
            args=(rendezvous, spec),
            nprocs=rendezvous.world - 1,
            join=False,
            start_method="spawn",
        )
        self.failure: BaseException | None = None
        self._closing = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="multitalk-worker-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        import sys

        while not self._closing.is_set():
            try:
                if self.context.join(timeout=1.0):
                    return
            except Exception as exc:  # a worker failed; join() carries its traceback
                self.failure = exc
                print(f"multitalk-runner: a worker rank failed: {exc}", file=sys.stderr, flush=True)
                _abort_process_group()
                return

    def close(self, timeout: float = 120.0) -> None:
        """Wait for every worker after rank 0 said stop; raises if one failed."""
        import time

        self._closing.set()
        self._watchdog.join()
        if self.failure is not None:
            raise RuntimeError(f"a worker rank failed: {self.failure}") from self.failure
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.context.join(timeout=1.0):
                    return
            except Exception as exc:  # torch's ProcessRaisedException / ProcessExitedException
                raise RuntimeError(f"a worker rank failed: {exc}") from exc
            if time.monotonic() > deadline:
                self.terminate()
                raise RuntimeError(f"worker ranks did not exit within {timeout:.0f} s")

    def terminate(self) -> None:
        """After a failed render: the workers may be inside a collective rank 0 left; end them."""
        self._closing.set()
        self._watchdog.join()
        for process in self.context.processes:
            if process.is_alive():
                process.terminate()
        for process in self.context.processes:
            process.join(timeout=30)


def _abort_process_group() -> None:
    import torch.distributed as dist

    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    if abort is not None and dist.is_initialized():
        try:
            abort()
        except RuntimeError:
            return
