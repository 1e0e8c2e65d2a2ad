"""Which MultiTalk files the model cache holds, and what is missing or wrong (no torch needed).

Expected layout under the cache root (names as published; see docs/engines/multitalk.md):

  Wan2.1-I2V-14B-480P-Diffusers/   Diffusers format: transformer/, vae/, text_encoder/,
                                   tokenizer/, image_encoder/, image_processor/
  Wan2.1-I2V-14B-480P/             original format (optional alternative for transformer + VAE):
                                   config.json, diffusion_pytorch_model*.safetensors, Wan2.1_VAE.pth
  MeiGen-MultiTalk/multitalk.safetensors
  MeiGen-InfiniteTalk/             optional, for dubbing (a source video): single/infinitetalk.safetensors
                                   (one speaker), multi/infinitetalk.safetensors (two speakers)
  chinese-wav2vec2-base/           config.json, model.safetensors or pytorch_model.bin

The text and image encoders always come from the Diffusers folder (the original .pth
files of umT5 and open-clip have no converter in diffusers).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIFFUSERS_DIR = "Wan2.1-I2V-14B-480P-Diffusers"
ORIGINAL_DIR = "Wan2.1-I2V-14B-480P"
MULTITALK_FILE = "MeiGen-MultiTalk/multitalk.safetensors"
INFINITETALK_DIR = "MeiGen-InfiniteTalk"
# InfiniteTalk's weights per speaker count (MeiGen-AI/InfiniteTalk), used when a request dubs a video.
INFINITETALK_FILES = {"single": "single/infinitetalk.safetensors", "multi": "multi/infinitetalk.safetensors"}
WAV2VEC_DIR = "chinese-wav2vec2-base"
ORIGINAL_VAE = "Wan2.1_VAE.pth"
ENCODER_SUBDIRS = ("text_encoder", "tokenizer", "image_encoder", "image_processor")

# The published 14B I2V geometry the audio weights were trained against.
WAN_DIM, WAN_LAYERS, WAN_HEADS, WAN_IN_CHANNELS = 5120, 40, 40, 36
AUDIO_PROBE_KEYS = {
    "audio_proj.proj1.weight": [512, 5 * 12 * 768],
    "audio_proj.proj1_vf.weight": [512, 8 * 12 * 768],
    "blocks.0.audio_cross_attn.kv_linear.weight": [2 * WAN_DIM, 768],
}
MAX_HEADER = 100 * 1024 * 1024


@dataclass
class ModelFiles:
    """Resolved paths; `problems` lists every missing or mismatched file, empty when all is well."""

    root: Path
    transformer_format: str = ""  # "diffusers" | "original"
    transformer_dir: Path | None = None
    transformer_files: list[Path] = field(default_factory=list)
    vae: Path | None = None  # folder (diffusers) or .pth (original)
    encoders_dir: Path | None = None
    multitalk: Path | None = None
    wav2vec: Path | None = None
    problems: list[str] = field(default_factory=list)
    # InfiniteTalk (dubbing): the files found, by speaker set ("single", "multi"), and what is
    # wrong with the others. Optional: they only decide whether a dub can run, not the engine.
    infinitetalk: dict[str, Path] = field(default_factory=dict)
    dubbing_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def audio_weights(self, dubbing: bool = False, persons: int = 1) -> Path | None:
        """The audio weights a render uses: multitalk.safetensors, or InfiniteTalk's for its speaker count."""
        if not dubbing:
            return self.multitalk
        return self.infinitetalk.get(infinitetalk_variant(persons))

    def transformer_bf16_bytes(self, dubbing: bool = False, persons: int = 1) -> int:
        """Bytes of the transformer + audio weights in bf16, from the safetensors headers (nothing loaded)."""
        shapes: dict[str, list[int]] = {}
        audio = self.audio_weights(dubbing, persons)
        for path in [*self.transformer_files, *([audio] if audio else [])]:
            shapes.update({key: entry["shape"] for key, entry in safetensors_header(path).items()})
        total = 0
        for shape in shapes.values():
            count = 1
            for size in shape:
                count *= size
            total += 2 * count
        return total

    def summary(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "transformerFormat": self.transformer_format or None,
            "transformer": str(self.transformer_dir) if self.transformer_dir else None,
            "multitalk": str(self.multitalk) if self.multitalk else None,
            "wav2vec": str(self.wav2vec) if self.wav2vec else None,
            "problems": self.problems,
            "infinitetalk": {
                name: str(self.infinitetalk[name]) if name in self.infinitetalk else None for name in INFINITETALK_FILES
            },
            "dubbingProblems": self.dubbing_problems,
        }


def infinitetalk_variant(persons: int) -> str:
    return "multi" if persons == 2 else "single"


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (key -> dtype, shape, offsets), read without loading tensors."""
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > MAX_HEADER:
            raise ValueError(f"{path}: header of {size} bytes is not plausible")
        header: dict[str, Any] = json.loads(handle.read(size))
    header.pop("__metadata__", None)
    return header


def _shards(folder: Path, stem: str, problems: list[str]) -> list[Path]:
    """Weight files of a (possibly sharded) safetensors checkpoint named like `stem.safetensors`."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            problems.append(f"{index}: unreadable index ({exc})")
            return []
        files = sorted({folder / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            problems.append(f"{folder}: missing shards {', '.join(missing)} (listed in {index.name})")
        return [f for f in files if f.is_file()]
    if single.is_file():
        return [single]
    problems.append(f"{folder}: no {stem}.safetensors and no {index.name}")
    return []


def _json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"missing {path}")
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        problems.append(f"{path}: not JSON ({exc})")
        return {}
    return data


def _check_geometry(name: str, got: dict[str, Any], want: dict[str, Any], problems: list[str]) -> None:
    for key, value in want.items():
        if key in got and got[key] != value:
            problems.append(f"{name}: {key} is {got[key]}, expected {value} (Wan2.1-I2V-14B)")


def locate(root: Path, strict_geometry: bool = True) -> ModelFiles:
    """Find every file the engine needs under root; collect all problems rather than stopping at the first."""
    files = ModelFiles(root=root)
    problems = files.problems
    if not root.is_dir():
        problems.append(f"model cache {root} does not exist")
        return files
    diffusers_dir, original_dir = root / DIFFUSERS_DIR, root / ORIGINAL_DIR

    if (diffusers_dir / "transformer" / "config.json").is_file():
        files.transformer_format = "diffusers"
        files.transformer_dir = diffusers_dir / "transformer"
        config = _json(files.transformer_dir / "config.json", problems)
        if strict_geometry:
            want = {"num_attention_heads": WAN_HEADS, "num_layers": WAN_LAYERS, "in_channels": WAN_IN_CHANNELS}
            _check_geometry("transformer/config.json", config, want, problems)
        files.transformer_files = _shards(files.transformer_dir, "diffusion_pytorch_model", problems)
    elif (original_dir / "config.json").is_file():
        files.transformer_format = "original"
        files.transformer_dir = original_dir
        config = _json(original_dir / "config.json", problems)
        if strict_geometry:
            want = {"dim": WAN_DIM, "num_layers": WAN_LAYERS, "num_heads": WAN_HEADS, "in_dim": WAN_IN_CHANNELS}
            _check_geometry(f"{ORIGINAL_DIR}/config.json", config, want, problems)
        files.transformer_files = _shards(original_dir, "diffusion_pytorch_model", problems)
    else:
        problems.append(
            f"no Wan2.1 I2V transformer: expected {DIFFUSERS_DIR}/transformer/config.json or {ORIGINAL_DIR}/config.json"
        )

    if (diffusers_dir / "vae" / "config.json").is_file():
        files.vae = diffusers_dir / "vae"
        _shards(files.vae, "diffusion_pytorch_model", problems)
    elif (original_dir / ORIGINAL_VAE).is_file():
        files.vae = original_dir / ORIGINAL_VAE
    else:
        problems.append(f"no VAE: expected {DIFFUSERS_DIR}/vae/ or {ORIGINAL_DIR}/{ORIGINAL_VAE}")

    missing_encoders = [sub for sub in ENCODER_SUBDIRS if not (diffusers_dir / sub).is_dir()]
    if missing_encoders:
        problems.append(f"{DIFFUSERS_DIR}: missing {', '.join(missing_encoders)} (umT5 and CLIP come from here)")
    else:
        files.encoders_dir = diffusers_dir
        for sub in ("text_encoder", "image_encoder"):
            _json(diffusers_dir / sub / "config.json", problems)

    files.multitalk = _check_multitalk(root / MULTITALK_FILE, problems, strict_geometry)
    for name, relative in INFINITETALK_FILES.items():
        found = _check_multitalk(root / INFINITETALK_DIR / relative, files.dubbing_problems, strict_geometry, True)
        if found is not None:
            files.infinitetalk[name] = found
    files.wav2vec = _check_wav2vec(root / WAV2VEC_DIR, problems)
    return files


def _check_multitalk(path: Path, problems: list[str], strict_geometry: bool, infinitetalk: bool = False) -> Path | None:
    """multitalk.safetensors, or (infinitetalk) one of InfiniteTalk's: same audio keys and geometry."""
    origin = (
        "MeiGen-AI/InfiniteTalk weights, for dubbing" if infinitetalk else "MeiGen-AI/MeiGen-MultiTalk audio weights"
    )
    if not path.is_file():
        problems.append(f"missing {path} ({origin})")
        return None
    try:
        header = safetensors_header(path)
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: not a safetensors file ({exc})")
        return None
    if "audio_proj.proj1.weight" not in header:
        problems.append(f"{path}: no audio_proj.* keys; is this {origin.split(' ')[0]}'s {path.name}?")
        return None
    if strict_geometry:
        for key, shape in AUDIO_PROBE_KEYS.items():
            got = header.get(key, {}).get("shape")
            if got != shape:
                problems.append(f"{path}: {key} has shape {got}, expected {shape}")
        layers = {k.split(".")[1] for k in header if k.startswith("blocks.") and ".audio_cross_attn." in k}
        if len(layers) != WAN_LAYERS:
            problems.append(f"{path}: audio layers for {len(layers)} blocks, expected {WAN_LAYERS}")
    return path


def _check_wav2vec(folder: Path, problems: list[str]) -> Path | None:
    if not folder.is_dir():
        problems.append(f"missing {folder} (TencentGameMate/chinese-wav2vec2-base)")
        return None
    config = _json(folder / "config.json", problems)
    if config and config.get("model_type") != "wav2vec2":
        problems.append(f"{folder}/config.json: model_type is {config.get('model_type')!r}, expected 'wav2vec2'")
    if not any((folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        problems.append(f"{folder}: no model.safetensors or pytorch_model.bin")
    return folder
