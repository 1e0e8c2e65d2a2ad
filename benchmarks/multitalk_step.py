"""MultiTalk denoiser: seconds per sampling step and peak VRAM (figures, not assertions).

Random weights at the published geometry (Wan2.1-I2V-14B transformer + MultiTalk audio
adapter, bf16), one sampling step = 3 model evaluations (text + audio CFG) or 2 with
--text-scale-one, for 1 and 2 persons (2 adds L-RoPE and its reference attention map).
Targets (issue 7): >= 1.5x faster per step than MeiGen's reference on the same GPU (its
published anchor: ~35 s per step on one A100 at 480p, 81 frames), < 40 GB VRAM without offload.
For the reference figure run MeiGen's generate_multitalk.py with the same size, frames and
steps on the same GPU and read its seconds per step.

    python benchmarks/multitalk_step.py [--size 480x832] [--frames 81] [--persons 1 2] [--steps 2]
    python benchmarks/multitalk_step.py --tiny     # a few-MB model on the CPU: checks the script
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from multitalk.runner.engines.multitalk.audio_adapter import MultiTalkAudioAdapter
from multitalk.runner.engines.multitalk.transformer import Conditioning, MultiTalkTransformer

FULL = {"heads": 40, "head_dim": 128, "ffn": 13824, "layers": 40, "text_dim": 4096, "audio_hidden": 512}
TINY = {"heads": 2, "head_dim": 16, "ffn": 64, "layers": 2, "text_dim": 32, "audio_hidden": 16}


def build(geometry: dict[str, int], device: torch.device, dtype: torch.dtype) -> MultiTalkTransformer:
    from diffusers import WanTransformer3DModel

    dim = geometry["heads"] * geometry["head_dim"]
    with torch.device("meta"):
        wan = WanTransformer3DModel(
            num_attention_heads=geometry["heads"],
            attention_head_dim=geometry["head_dim"],
            in_channels=36,
            out_channels=16,
            text_dim=geometry["text_dim"],
            ffn_dim=geometry["ffn"],
            num_layers=geometry["layers"],
            image_dim=1280,
            added_kv_proj_dim=dim,
        )
        audio = MultiTalkAudioAdapter(
            num_layers=geometry["layers"],
            dim=dim,
            num_heads=geometry["heads"],
            intermediate_dim=geometry["audio_hidden"],
        )
    model = MultiTalkTransformer(wan, audio).to_empty(device=device)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
            else:
                param.normal_(0.0, 0.02)
    model.wan.rope = type(model.wan.rope)(geometry["head_dim"], (1, 2, 2), 1024).to(device)
    return model.to(dtype).eval()


def conditions(persons: int, frames: int, height: int, width: int, text_dim: int, device: torch.device) -> dict:
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
    return {
        "cond": Conditioning(text=text, audio=audio, branch="cond", **base),
        "drop_text": Conditioning(text=torch.zeros_like(text), audio=audio, branch="drop_text", **base),
        "uncond": Conditioning(text=torch.zeros_like(text), audio=audio[-1:] * 0, branch="uncond", **base),
        "drop_audio": Conditioning(text=text, audio=audio[-1:] * 0, branch="drop_audio", **base),
        "latents": torch.randn(1, 16, lat_t, lat_h, lat_w, device=device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="480x832", help="HEIGHTxWIDTH in pixels (multiples of 16)")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--persons", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--text-scale-one", action="store_true", help="2 evaluations per step instead of 3")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    height, width = (int(x) for x in args.size.split("x"))
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    geometry = TINY if args.tiny else FULL
    if args.tiny:
        height, width, frames = 64, 64, 9
    else:
        frames = args.frames
    model = build(geometry, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    branches = ("cond", "drop_audio") if args.text_scale_one else ("cond", "drop_text", "uncond")
    rows = []
    for persons in args.persons:
        inputs = conditions(persons, frames, height, width, geometry["text_dim"], device)
        timestep = torch.tensor([900.0], device=device)

        def step(inputs: dict = inputs, timestep: torch.Tensor = timestep) -> None:
            with torch.no_grad():
                for branch in branches:
                    model(inputs["latents"], timestep, inputs[branch])

        step()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.steps
        rows.append(
            {
                "persons": persons,
                "size": f"{height}x{width}",
                "frames": frames,
                "evalsPerStep": len(branches),
                "secondsPerStep": round(seconds, 3),
                "peakVramGiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            }
        )
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(json.dumps({"device": device_name, "dtype": str(dtype), "parameters": params, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
