"""Run the tiny MultiTalk pipeline on several CPU ranks (gloo) and on one, for side-by-side comparison.

Each spawned rank builds the same seeded tiny model; rank 0 runs every case through the
real pipeline with distributed.ParallelDenoiser while the other ranks serve, then all
ranks run direct transformer forwards on sub-groups (uneven token and head splits). One
spawn per world size runs every case, so the multi-rank tests pay the start-up once.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from multitalk.runner.engines.multitalk.assemble import build_transformer
from multitalk.runner.engines.multitalk.parallel_plan import Rendezvous
from multitalk.runner.engines.multitalk.person_masks import image_masks, latent_masks
from multitalk.runner.engines.multitalk.pipeline import Encoders, MultiTalkPipeline, Settings
from multitalk.runner.engines.multitalk.residency import ShardedBlocks, shard_block
from multitalk.runner.engines.multitalk.sampler import Guidance
from multitalk.runner.engines.multitalk.sequence_parallel import SequenceParallel
from multitalk.runner.engines.multitalk.transformer import Conditioning, MultiTalkTransformer
from multitalk.runner.engines.multitalk.weights import original_to_diffusers, split_audio, wan_config_from_original

from . import tiny
from .parity import run_with_rounding

# {1, 2} persons x {clip, streaming}; text scale 5 = 3 evaluations per step, 1 = 2 evaluations,
# so on 2 and 4 ranks the plan mixes sequence parallelism and CFG groups.
CASES: dict[str, dict[str, Any]] = {
    "clip_two_persons": {**tiny.SAMPLING_CASES["clip_two_persons"]},
    "streaming_one_person": {**tiny.SAMPLING_CASES["streaming_one_person"]},
    "clip_one_person_text_off": {
        **tiny.SAMPLING_CASES["clip_two_persons"],
        "persons": 1,
        "text_scale": 1.0,
        "apg": True,
        "tea_cache": 0.05,
    },
    "streaming_two_persons": {
        **tiny.SAMPLING_CASES["streaming_one_person"],
        "persons": 2,
        "text_scale": 5.0,
        "apg": False,
    },
}
# Direct forwards on sub-groups of the world: ranks, then the token/head split they get
# (parity inputs: 3 latent frames of 4 x 4 tokens = 48 tokens, 4 heads).
FORWARD_GROUPS = {2: ([0, 1],), 4: ([0, 1, 2], [0, 1, 2, 3])}
# Run again with every block FSDP-sharded over the world: 2 evaluations per step (CFG groups in
# lockstep) and TeaCache skipping some of them.
SHARDED_CASE = "clip_one_person_text_off"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tiny_model(on_block: Any = None) -> MultiTalkTransformer:
    base, audio = split_audio(tiny.seeded_state_dict())
    config = wan_config_from_original(tiny.REFERENCE_CONFIG)
    return build_transformer(config, original_to_diffusers(base), audio, dtype=torch.float32, on_block=on_block)


def sharded_tiny_model(world: int) -> MultiTalkTransformer:
    """Every block FSDP-sharded over the world as it is built (what the loader does with shard=True)."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (world,))
    model = tiny_model(lambda name, block: shard_block(block, mesh))
    model.block_residency = ShardedBlocks(model.block_pairs())
    return model


def tiny_encoders() -> Encoders:
    return Encoders(tiny.encode_text, tiny.encode_image, tiny.encode_video, tiny.decode_latents)


def run_case(pipeline: MultiTalkPipeline, case: dict[str, Any]) -> torch.Tensor:
    """All frames [3, n, H, W] of one case (bboxes for two persons)."""
    image = (tiny.reference_image().permute(2, 0, 1) / 255 - 0.5) * 2
    masks = None
    if case["persons"] == 2:
        source = image_masks(tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 2, tiny.BBOXES)
        masks = latent_masks(source, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE // 8, tiny.IMAGE_SIZE // 8)
    settings = Settings(
        frame_num=case["frame_num"],
        motion_frames=case.get("motion_frames", 25),
        streaming=case["streaming"],
        steps=case["steps"],
        shift=case["shift"],
        seed=case["seed"],
        tea_cache=case.get("tea_cache", 0.0),
        guidance=Guidance(
            case["text_scale"],
            case["audio_scale"],
            apg=case["apg"],
            apg_norm_threshold=case.get("apg_norm_threshold", 55.0),
        ),
        color_strength=case["color"],
        negative_prompt=tiny.NEGATIVE,
    )
    audio = tiny.audio_features(case["persons"], case["audio_frames"])
    return torch.cat(list(pipeline.generate(image, audio, tiny.PROMPT, settings, masks)), dim=1)


def forward_inputs(persons: int) -> tuple[torch.Tensor, torch.Tensor, Conditioning]:
    inp = tiny.seeded_inputs(persons)
    cond = Conditioning(
        text=tiny.pad_text(inp["text"]),
        image=inp["clip"],
        condition=inp["condition"][None],
        audio=inp["audio"],
        masks=tiny.two_person_masks() if persons == 2 else None,
    )
    return inp["latents"][None], inp["timestep"], cond


def single_rank_results() -> dict[str, Any]:
    """The reference: the same code on this process alone, run plainly and under simulated fp32
    rounding (parity.py), so the multi-rank outputs are held to the rounding bound of each output."""

    def compute() -> dict[str, torch.Tensor]:
        model = tiny_model()
        pipeline = MultiTalkPipeline(model, tiny_encoders(), torch.device("cpu"))
        out = {f"cases/{name}": run_case(pipeline, case) for name, case in CASES.items()}
        model.teacache = None
        for persons in (1, 2):
            out[f"forward/{persons}"] = model(*forward_inputs(persons))
        return out

    run = run_with_rounding(compute)
    return {
        "run": run,
        "cases": {name: run.outputs[f"cases/{name}"] for name in CASES},
        "forward": {persons: run.outputs[f"forward/{persons}"] for persons in (1, 2)},
    }


def rank_main(rank: int, world: int, port: int, out_dir: str) -> None:
    """One spawned rank (torch.multiprocessing passes the index first)."""
    from multitalk.runner.engines.multitalk import distributed

    torch.set_num_threads(1)
    device = distributed.join(Rendezvous(world, port=port, device_type="cpu"), rank)
    model = tiny_model()
    state = distributed.RankState(model, device)
    results: dict[str, Any] = {"cases": {}, "layouts": {}, "forward": {}, "sent": {}, "sharded": {}}
    with torch.no_grad():
        if rank == 0:
            denoiser = distributed.ParallelDenoiser(state)
            pipeline = MultiTalkPipeline(denoiser, tiny_encoders(), device)
            for name, case in CASES.items():
                results["cases"][name] = run_case(pipeline, case)
                results["layouts"][name] = pipeline.layout
            denoiser.stop()
        else:
            distributed.serve(state)
        model.teacache = None
        for ranks in FORWARD_GROUPS[world]:
            group = dist.new_group(ranks)
            if rank in ranks:
                sp = SequenceParallel(group, ranks.index(rank), len(ranks))
                model.sequence_parallel = sp
                for persons in (1, 2):
                    sp.sent_bytes = 0
                    results["forward"][(len(ranks), persons)] = model(*forward_inputs(persons))
                    results["sent"][(len(ranks), persons)] = sp.sent_bytes
            model.sequence_parallel = None
        sharded = sharded_tiny_model(world)
        block = sharded.wan.blocks[0].attn1.to_q.weight
        results["shard_rows"] = (block.to_local().shape[0], block.shape[0])
        for persons in (1, 2):
            results["sharded"][("forward", persons)] = sharded(*forward_inputs(persons))
        sharded.sequence_parallel = SequenceParallel(dist.group.WORLD, rank, world)
        results["sharded"][("forward_sp", 2)] = sharded(*forward_inputs(2))
        sharded.sequence_parallel = None
        state = distributed.RankState(sharded, device)
        if rank == 0:
            denoiser = distributed.ParallelDenoiser(state)
            pipeline = MultiTalkPipeline(denoiser, tiny_encoders(), device)
            results["sharded"][("case", SHARDED_CASE)] = run_case(pipeline, CASES[SHARDED_CASE])
            denoiser.stop()
        else:
            distributed.serve(state)
    if rank == 0:
        torch.save(results, Path(out_dir) / "rank0.pt")
    dist.barrier()
    distributed.leave()


def multi_rank_results(world: int, out_dir: Path) -> dict[str, Any]:
    import torch.multiprocessing as mp

    mp.start_processes(rank_main, args=(world, free_port(), str(out_dir)), nprocs=world, start_method="spawn")
    results: dict[str, Any] = torch.load(out_dir / "rank0.pt", weights_only=False)
    return results
