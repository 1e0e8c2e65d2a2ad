"""Host memory while loading the MultiTalk transformer: streamed, block-by-block quantisation vs loading whole.

Writes a random bf16 checkpoint of a scaled-down Wan + audio geometry in the Diffusers
layout (sharded safetensors + multitalk.safetensors), then loads it in a fresh process per
mode onto the CPU and samples the process's private memory (RssAnon: what it holds itself;
the memory-mapped checkpoint pages are the kernel's page cache, reported separately as
RssFile) every millisecond:

- stream-<precision>: our loader (loader.load_transformer): each block is read, cast, and
  quantised before the next is read.
- whole-then-int8: the naive path for comparison: every tensor copied into RAM (as a dtype
  cast or a non-mmap load does), the model built, then torchao quantize_ on all its blocks.

The audio projection (~61 M parameters at any width) stays in bf16, so the small geometries
quantise a smaller share of the weights than the 14B model (99%).

    python benchmarks/multitalk_load_memory.py              # medium: dim 1536, 12 blocks (~1.3 GB bf16)
    python benchmarks/multitalk_load_memory.py --quick      # dim 512, 4 blocks
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SIZES = {
    "medium": {"heads": 12, "head_dim": 128, "ffn": 6144, "layers": 12},
    "quick": {"heads": 4, "head_dim": 128, "ffn": 2048, "layers": 4},
}
MODES = ("stream-bf16", "stream-int8", "stream-fp8", "whole-then-int8")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class PeakSampler:
    """Peak RssAnon of this process, sampled every millisecond on a thread."""

    def __init__(self) -> None:
        self.peak = _status("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status("RssAnon"))
            time.sleep(0.001)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("RssAnon"))


def wan_config(geometry: dict[str, int]) -> dict[str, Any]:
    dim = geometry["heads"] * geometry["head_dim"]
    return {
        "patch_size": [1, 2, 2],
        "num_attention_heads": geometry["heads"],
        "attention_head_dim": geometry["head_dim"],
        "in_channels": 36,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": geometry["ffn"],
        "num_layers": geometry["layers"],
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": 1280,
        "added_kv_proj_dim": dim,
        "rope_max_seq_len": 1024,
    }


def write_checkpoint(root: Path, geometry: dict[str, int]) -> None:
    """Random bf16 weights, one shard per block group so writing never holds the whole model either."""
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file

    from multitalk.runner.engines.multitalk.audio_adapter import MultiTalkAudioAdapter

    config = wan_config(geometry)
    folder = root / "transformer"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    with torch.device("meta"):
        wan = WanTransformer3DModel(**config)
        audio = MultiTalkAudioAdapter(
            num_layers=geometry["layers"],
            dim=config["num_attention_heads"] * geometry["head_dim"],
            num_heads=geometry["heads"],
        )
    shapes = {k: v.shape for k, v in wan.state_dict().items()}
    shards = 4
    keys = sorted(shapes)
    weight_map = {}
    g = torch.Generator().manual_seed(0)
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: (torch.randn(shapes[k], generator=g) * 0.02).to(torch.bfloat16) for k in keys[i::shards]}
        save_file(part, str(folder / name))
        weight_map.update(dict.fromkeys(part, name))
        del part
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    published = {}
    for key, value in audio.state_dict().items():
        name = key.replace("audio_blocks.", "blocks.", 1)
        published[name] = (torch.randn(value.shape, generator=g) * 0.02).to(torch.bfloat16)
    save_file(published, str(root / "multitalk.safetensors"))


def measure(root: Path, mode: str) -> dict[str, Any]:
    """In this (fresh) process: load once in `mode`, report peak private memory."""
    import torch
    import torchao.quantization  # noqa: F401  (its import is not part of loading)

    from multitalk.runner.engines.multitalk.loader import load_transformer
    from multitalk.runner.engines.multitalk.model_files import ModelFiles
    from multitalk.runner.engines.multitalk.quantization import weight_bytes

    folder = root / "transformer"
    files = ModelFiles(
        root=root,
        transformer_format="diffusers",
        transformer_dir=folder,
        transformer_files=sorted(folder.glob("*.safetensors")),
        multitalk=root / "multitalk.safetensors",
    )
    before = _status("RssAnon")
    started = time.perf_counter()
    with PeakSampler() as sampler, torch.no_grad():
        if mode.startswith("stream-"):
            model = load_transformer(files, torch.bfloat16, "cpu", mode.removeprefix("stream-"))
        else:
            from safetensors.torch import load_file
            from torchao.quantization import Int8WeightOnlyConfig, quantize_

            from multitalk.runner.engines.multitalk.assemble import build_adapter, build_wan
            from multitalk.runner.engines.multitalk.loader import return_freed_memory_eagerly
            from multitalk.runner.engines.multitalk.transformer import MultiTalkTransformer
            from multitalk.runner.engines.multitalk.weights import audio_key

            return_freed_memory_eagerly()  # same allocator policy as the streamed path
            state: dict[str, torch.Tensor] = {}
            for path in files.transformer_files:
                state.update({k: v.clone() for k, v in load_file(str(path)).items()})
            audio = {audio_key(k): v.clone() for k, v in load_file(str(files.multitalk)).items()}
            config = json.loads((folder / "config.json").read_text())
            wan = build_wan(config, state, torch.bfloat16)
            model = MultiTalkTransformer(wan, build_adapter(wan.config, audio, torch.bfloat16))
            del state, audio
            quantize_(model.wan.blocks, Int8WeightOnlyConfig())
            quantize_(model.audio.audio_blocks, Int8WeightOnlyConfig())
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "weightsMiB": round(weight_bytes(model) / 2**20, 1),
        "peakPrivateMiB": round((sampler.peak - before) / 2**20, 1),
        "afterPrivateMiB": round((_status("RssAnon") - before) / 2**20, 1),
        "pageCacheMappedMiB": round(_status("RssFile") / 2**20, 1),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--checkpoint", type=Path, help="reuse (or write once into) this folder")
    parser.add_argument("--measure", nargs=2, metavar=("ROOT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1])))
        return
    size = "quick" if args.quick else "medium"
    geometry = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.checkpoint or Path(tmp)
        if not (root / "multitalk.safetensors").exists():
            write_checkpoint(root, geometry)
        checkpoint = sum(p.stat().st_size for p in root.rglob("*.safetensors"))
        rows = []
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--measure", str(root), mode], capture_output=True, text=True, check=True
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    full = next(r for r in rows if r["mode"] == "stream-bf16")["weightsMiB"]
    for row in rows:
        row["peakOverBf16Weights"] = round(row["peakPrivateMiB"] / full, 3)
    print(json.dumps({"geometry": geometry, "checkpointMiB": round(checkpoint / 2**20, 1), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
