"""MultiTalk denoiser: seconds per sampling step, peak VRAM per GPU, host RSS; N-GPU scaling (figures, not assertions).

Random weights at the published geometry (Wan2.1-I2V-14B transformer + MultiTalk audio
adapter), materialised block by block on the GPU in the requested precision exactly as the
loader does (bf16, or quantised while loading: fp8 e4m3 / int8 weight-only). One sampling
step = 3 model evaluations (text + audio CFG), or 2 with --text-scale-one; 2 persons adds
L-RoPE and its reference attention map.

The one command for one H100/H200 (bf16, fp8 and int8 at 480p, 81 frames; estimated 3-6 minutes):

    python benchmarks/multitalk_step.py

Several GPUs (ranks spawned here, NCCL; the same code path as the runner's), measured side
by side with one GPU in the same run:

    python benchmarks/multitalk_step.py --gpus 8 --precision bf16

Scaling projection: every run also prints the per-step time N GPUs would take by this
model, from the measured one-GPU step time T1 and the communication volume our
collectives send (parallel_plan.sequence_parallel_bytes, equal to the bytes counted by
SequenceParallel in tests/engine_multitalk/test_parallel.py):

    T_N = T1 / cfg * ((1 - r) / sp + r) + V / B

cfg x sp = N is the runner's layout (parallel_plan.plan_layout), r the share of
per-evaluation FLOPs every rank of a group repeats (conditioning embedders, the text/image
and audio key/value projections), V the bytes one rank sends per step (Ulysses
all-to-alls, L-RoPE map all-reduce, output gather, CFG gather, latent broadcast) and B the
per-GPU link bandwidth (--link-gbps; communication is assumed not to overlap compute).

Targets (issue 12): one GPU bf16 >= 1.5x faster per step than MeiGen's reference on the
same GPU (published anchor: ~35 s per step on one A100 at 480p); fp8 <= 32 GB at 480p
without offload; N GPUs >= 0.7 N on the DiT. For the reference figure run MeiGen's
generate_multitalk.py with the same size, frames and steps on the same GPU.

    python benchmarks/multitalk_step.py --tiny            # a few-MB model on the CPU: checks the script
    python benchmarks/multitalk_step.py --tiny --gpus 2   # ... and the multi-rank path (gloo)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from multitalk.runner.engines.multitalk.assemble import build_adapter, build_wan
from multitalk.runner.engines.multitalk.parallel_plan import Rendezvous, plan_layout, sequence_parallel_bytes
from multitalk.runner.engines.multitalk.quantization import (
    fp8_support,
    quantize_block,
    quantize_config,
    weight_bytes,
)
from multitalk.runner.engines.multitalk.transformer import Conditioning, MultiTalkTransformer

FULL = {"heads": 40, "head_dim": 128, "ffn": 13824, "layers": 40, "text_dim": 4096, "audio_hidden": 512}
TINY = {"heads": 2, "head_dim": 16, "ffn": 64, "layers": 2, "text_dim": 32, "audio_hidden": 16}
CONTEXT_TOKENS = 512 + 257  # umT5 text + CLIP image tokens
AUDIO_TOKENS = 32  # per person and latent frame
LATENT_CHANNELS = 16


def wan_config(geometry: dict[str, int]) -> dict[str, Any]:
    dim = geometry["heads"] * geometry["head_dim"]
    return {
        "num_attention_heads": geometry["heads"],
        "attention_head_dim": geometry["head_dim"],
        "in_channels": 36,
        "out_channels": 16,
        "text_dim": geometry["text_dim"],
        "ffn_dim": geometry["ffn"],
        "num_layers": geometry["layers"],
        "image_dim": 1280,
        "added_kv_proj_dim": dim,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
    }


class RandomTensors(Mapping[str, torch.Tensor]):
    """A state dict whose tensors are drawn on access, on the device: nothing full-size ever sits in host RAM."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], device: torch.device, dtype: torch.dtype) -> None:
        self.shapes, self.device, self.dtype = dict(shapes), device, dtype

    def __getitem__(self, key: str) -> torch.Tensor:
        shape = self.shapes[key]
        if len(shape) == 1:
            fill = 1.0 if "norm" in key and key.endswith("weight") else 0.0
            return torch.full(shape, fill, device=self.device, dtype=self.dtype)
        return torch.randn(shape, device=self.device, dtype=self.dtype) * 0.02

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


def build(geometry: dict[str, int], device: torch.device, dtype: torch.dtype, precision: str) -> MultiTalkTransformer:
    """The denoiser as the loader builds it: block by block, each quantised before the next exists."""
    from diffusers import WanTransformer3DModel

    from multitalk.runner.engines.multitalk.audio_adapter import MultiTalkAudioAdapter

    config = wan_config(geometry)
    with torch.device("meta"):
        wan_shapes = {k: tuple(v.shape) for k, v in WanTransformer3DModel(**config).state_dict().items()}
        audio = MultiTalkAudioAdapter(
            num_layers=geometry["layers"],
            dim=geometry["heads"] * geometry["head_dim"],
            num_heads=geometry["heads"],
            intermediate_dim=geometry["audio_hidden"],
        )
        audio_shapes = {k: tuple(v.shape) for k, v in audio.state_dict().items()}
    config_q = quantize_config(precision, device)

    def finish(name: str, block: torch.nn.Module) -> None:
        quantize_block(block, config_q)

    with torch.no_grad():
        wan = build_wan(config, RandomTensors(wan_shapes, device, dtype), dtype, device, finish)
        adapter = build_adapter(wan.config, RandomTensors(audio_shapes, device, dtype), dtype, device, finish)
    return MultiTalkTransformer(wan, adapter)


def conditions(
    persons: int, frames: int, height: int, width: int, text_dim: int, device: torch.device
) -> dict[str, Any]:
    lat_t, lat_h, lat_w = (frames - 1) // 4 + 1, height // 8, width // 8
    masks = torch.zeros(3, lat_h, lat_w, device=device)
    masks[0, :, : lat_w // 2] = 1
    masks[1, :, lat_w // 2 :] = 1
    audio = torch.randn(persons, frames, 5, 12, 768, device=device)
    base = {
        "image": torch.randn(1, 257, 1280, device=device),
        "condition": torch.randn(1, 20, lat_t, lat_h, lat_w, device=device),
        "masks": masks if persons == 2 else None,
    }
    text = torch.randn(1, 512, text_dim, device=device)
    silent = audio[-1:] * 0
    return {
        "branches": {
            "cond": Conditioning(text=text, audio=audio, branch="cond", **base),
            "drop_text": Conditioning(text=torch.zeros_like(text), audio=audio, branch="drop_text", **base),
            "uncond": Conditioning(text=torch.zeros_like(text), audio=silent, branch="uncond", **base),
            "drop_audio": Conditioning(text=text, audio=silent, branch="drop_audio", **base),
        },
        "latent": torch.randn(LATENT_CHANNELS, lat_t, lat_h, lat_w, device=device),
        "tokens": lat_t * (lat_h // 2) * (lat_w // 2),
        "frames": lat_t,
    }


def host_memory() -> dict[str, float]:
    """Peak and current resident memory of this process (GiB); RssAnon excludes memory-mapped files."""
    out = {"peakRssGiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            out["privateRssGiB"] = round(int(line.split()[1]) / 2**20, 2)
    return out


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(predict: Any, latent: torch.Tensor, names: tuple[str, ...], steps: int, device: torch.device) -> float:
    """One warm-up evaluation, then `steps` full steps (every branch); seconds per step."""
    timestep = torch.tensor([900.0], device=device)
    predict(latent, timestep, names[:1])
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        predict(latent, timestep, names)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def flops_per_evaluation(geometry: dict[str, int], tokens: int, frames: int, persons: int) -> tuple[float, float]:
    """(FLOPs split over the sequence-parallel ranks, FLOPs every rank repeats) of one evaluation."""
    d, ffn, layers = geometry["heads"] * geometry["head_dim"], geometry["ffn"], geometry["layers"]
    per_frame = tokens // frames
    linear = 2 * tokens * (4 * d * d + 2 * d * d + 2 * d * ffn + 2 * d * d)  # self, cross q/o, ffn, audio q/proj
    attention = 4 * tokens * d * (tokens + CONTEXT_TOKENS + AUDIO_TOKENS * persons)
    lrope = 2 * tokens * per_frame * d if persons == 2 else 0
    split = layers * (linear + attention + lrope)
    context_kv = 2 * CONTEXT_TOKENS * 2 * d * d
    audio_kv = 2 * frames * AUDIO_TOKENS * persons * 768 * 2 * d
    embedders = 2 * (512 * (geometry["text_dim"] * d + d * d) + 257 * (1280 * d + d * d))
    return float(split), float(layers * (context_kv + audio_kv) + embedders)


def projection(
    geometry: dict[str, int], inputs: dict[str, Any], persons: int, branches: int, t1: float, links: list[float]
) -> list[dict[str, Any]]:
    """Projected seconds per step and speed-up on 2, 4, 8 GPUs (the model in the module docstring)."""
    split, repeated = flops_per_evaluation(geometry, inputs["tokens"], inputs["frames"], persons)
    r = repeated / (split + repeated)
    latent_bytes = inputs["latent"].numel() * 4
    rows = []
    for world in (2, 4, 8):
        plan = plan_layout(world, branches)
        evals = branches // plan.cfg
        per_eval = sequence_parallel_bytes(
            inputs["tokens"], geometry["heads"], geometry["head_dim"], geometry["layers"], plan.sp, 0, 2, persons
        )
        cfg_gather = (world - 1) * evals * latent_bytes if plan.cfg > 1 else 0
        volume = evals * per_eval + cfg_gather + (world - 1) * latent_bytes  # + the latent broadcast
        compute = t1 / plan.cfg * ((1 - r) / plan.sp + r)
        for link in links:
            seconds = compute + volume / (link * 1e9)
            rows.append(
                {
                    "gpus": world,
                    "layout": plan.describe(),
                    "linkGBps": link,
                    "sentPerRankGBPerStep": round(volume / 1e9, 2),
                    "replicatedShare": round(r, 4),
                    "secondsPerStep": round(seconds, 3),
                    "speedup": round(t1 / seconds, 2),
                    "efficiency": round(t1 / seconds / world, 3),
                }
            )
    return rows


def run_rank(rank: int, args: argparse.Namespace, precision: str, port: int, out_dir: str) -> None:
    """One rank of a --gpus N run (spawned); rank 0 times, every rank reports memory."""
    import torch.distributed as dist

    from multitalk.runner.engines.multitalk import distributed

    device_type = "cpu" if args.tiny else "cuda"
    rendezvous = Rendezvous(args.gpus, port=port, device_type=device_type)
    device = distributed.join(rendezvous, rank)
    geometry, dtype, height, width, frames = setup(args, device)
    model = build(geometry, device, dtype, precision)
    state = distributed.RankState(model, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = []
    with torch.no_grad():
        if rank == 0:
            denoiser = distributed.ParallelDenoiser(state)
            for persons in args.persons:
                inputs = conditions(persons, frames, height, width, geometry["text_dim"], device)
                names = branch_names(args)
                layout = denoiser.start_render(len(names), 0.0, args.steps)
                denoiser.set_window(inputs["branches"])
                seconds = time_steps(denoiser, inputs["latent"], names, args.steps, device)
                rows.append({"persons": persons, "layout": layout, "secondsPerStep": round(seconds, 3)})
            denoiser.stop()
        else:
            distributed.serve(state)
    memory = {
        "rank": rank,
        "peakVramGiB": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "weightsGiB": round(weight_bytes(model) / 2**30, 3),
        **host_memory(),
    }
    gathered: list[Any] = [None] * args.gpus
    dist.all_gather_object(gathered, memory)
    if rank == 0:
        Path(out_dir, "result.json").write_text(json.dumps({"rows": rows, "ranks": gathered}))
    distributed.leave()


def branch_names(args: argparse.Namespace) -> tuple[str, ...]:
    return ("cond", "drop_audio") if args.text_scale_one else ("cond", "drop_text", "uncond")


def setup(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, int], torch.dtype, int, int, int]:
    height, width = (int(x) for x in args.size.split("x"))
    if args.tiny:
        return TINY, torch.float32, 64, 64, 9
    return FULL, torch.bfloat16, height, width, args.frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def single_gpu(args: argparse.Namespace, precision: str, device: torch.device) -> dict[str, Any]:
    geometry, dtype, height, width, frames = setup(args, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    model = build(geometry, device, dtype, precision)
    build_seconds = time.perf_counter() - started
    names = branch_names(args)
    rows = []
    for persons in args.persons:
        inputs = conditions(persons, frames, height, width, geometry["text_dim"], device)

        def predict(
            latent: torch.Tensor,
            timestep: torch.Tensor,
            which: tuple[str, ...],
            branches: dict[str, Conditioning] = inputs["branches"],
        ) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                return {n: model(latent[None].to(dtype), timestep, branches[n])[0] for n in which}

        seconds = time_steps(predict, inputs["latent"], names, args.steps, device)
        rows.append(
            {
                "persons": persons,
                "size": f"{height}x{width}",
                "frames": frames,
                "evalsPerStep": len(names),
                "secondsPerStep": round(seconds, 3),
                "projection": projection(geometry, inputs, persons, len(names), seconds, args.link_gbps),
            }
        )
    out = {
        "precision": precision,
        "buildSeconds": round(build_seconds, 1),
        "weightsGiB": round(weight_bytes(model) / 2**30, 2),
        "peakVramGiB": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        **host_memory(),
        "results": rows,
    }
    return out  # the model goes with this frame, before the next precision is built


def multi_gpu(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    import tempfile

    from torch.multiprocessing.spawn import start_processes

    with tempfile.TemporaryDirectory() as tmp:
        start_processes(run_rank, args=(args, precision, free_port(), tmp), nprocs=args.gpus, start_method="spawn")
        result: dict[str, Any] = json.loads(Path(tmp, "result.json").read_text())
    return {"precision": precision, "gpus": args.gpus, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="480x832", help="HEIGHTxWIDTH in pixels (multiples of 16)")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--persons", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up evaluation")
    parser.add_argument("--text-scale-one", action="store_true", help="2 evaluations per step instead of 3")
    parser.add_argument("--gpus", type=int, default=1, help="ranks, one GPU each (spawned here, NCCL)")
    parser.add_argument("--precision", nargs="+", default=["bf16", "fp8", "int8"], choices=["bf16", "fp8", "int8"])
    parser.add_argument(
        "--link-gbps", type=float, nargs="+", default=[100.0, 25.0], help="per-GPU GB/s for the projection"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (gloo with --gpus)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        parser.error("no CUDA device: full-size figures need a GPU (use --tiny to check the script on the CPU)")
    if cuda and args.gpus > torch.cuda.device_count():
        parser.error(f"--gpus {args.gpus} but torch sees {torch.cuda.device_count()} GPU(s)")
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    skipped = {}
    runs = []
    for precision in args.precision:
        supported, why = fp8_support(device) if precision == "fp8" else (True, "")
        if not supported:
            skipped[precision] = why
            continue
        one = single_gpu(args, precision, device)
        if args.gpus > 1:  # side by side: the same precision and inputs on one GPU, then on N
            if cuda:
                torch.cuda.empty_cache()
            many = multi_gpu(args, precision)
            for row, base in zip(many["rows"], one["results"], strict=True):
                speedup = base["secondsPerStep"] / row["secondsPerStep"]
                row["measuredSpeedup"] = round(speedup, 2)
                row["measuredEfficiency"] = round(speedup / args.gpus, 3)
            one = {"oneGpu": one, "nGpus": many}
        runs.append(one)
        print(json.dumps(runs[-1]), flush=True)  # partial figures survive a later failure
    summary = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "gpus": args.gpus,
        "torch": torch.__version__,
        "cudaVisible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "skipped": skipped,
        "runs": runs,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
