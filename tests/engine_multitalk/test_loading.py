"""Weight loading from tiny checkpoints written in each published layout and key naming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from multitalk.runner.engines.multitalk import model_files
from multitalk.runner.engines.multitalk.loader import load_transformer, merge_lora
from multitalk.runner.engines.multitalk.weights import split_audio

from . import parity, tiny
from .test_transformer_parity import TOL, forward_run


def write_sharded(
    folder: Path, state: dict[str, torch.Tensor], shards: int, extra: dict[str, str] | None = None
) -> None:
    """safetensors shards + index.json, the way both Wan layouts publish their transformer."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    weight_map = dict(extra or {})
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i::shards]}
        save_file(part, str(folder / name))
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))


def write_multitalk(root: Path, audio_original: dict[str, torch.Tensor]) -> None:
    (root / "MeiGen-MultiTalk").mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in audio_original.items()}, str(root / model_files.MULTITALK_FILE))


def write_wav2vec(root: Path) -> None:
    from transformers import Wav2Vec2Model

    Wav2Vec2Model(tiny.tiny_wav2vec_config()).save_pretrained(root / model_files.WAV2VEC_DIR)


def write_encoder_stubs(root: Path) -> None:
    """Encoder folders exist (their loading is transformers' own from_pretrained, not under test here)."""
    for sub in model_files.ENCODER_SUBDIRS:
        folder = root / model_files.DIFFUSERS_DIR / sub
        folder.mkdir(parents=True, exist_ok=True)
        if sub.endswith("encoder"):
            (folder / "config.json").write_text("{}")


def original_audio() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    state = tiny.seeded_state_dict()
    audio = {k: v for k, v in state.items() if ".audio_cross_attn." in k or ".norm_x." in k or "audio_proj." in k}
    base = {k: v for k, v in state.items() if k not in audio}
    return base, audio


@pytest.fixture
def original_cache(tmp_path: Path) -> Path:
    """Wan2.1-I2V-14B-480P as published (original keys, config.json of WanModel) + MultiTalk files."""
    base, audio = original_audio()
    folder = tmp_path / model_files.ORIGINAL_DIR
    # MeiGen's instructions put multitalk.safetensors into the Wan folder and list it in the index.
    write_sharded(folder, base, shards=3, extra=dict.fromkeys(audio, "multitalk.safetensors"))
    save_file({k: v.contiguous() for k, v in audio.items()}, str(folder / "multitalk.safetensors"))
    (folder / "config.json").write_text(json.dumps({**tiny.REFERENCE_CONFIG, "_class_name": "WanModel"}))
    torch.save({"decoder.conv1.weight": torch.zeros(1)}, folder / model_files.ORIGINAL_VAE)
    write_multitalk(tmp_path, audio)
    write_wav2vec(tmp_path)
    write_encoder_stubs(tmp_path)
    return tmp_path


@pytest.fixture
def diffusers_cache(tmp_path: Path) -> Path:
    """Wan2.1-I2V-14B-480P-Diffusers layout (the transformer saved by diffusers itself) + MultiTalk files."""
    from multitalk.runner.engines.multitalk.assemble import build_wan
    from multitalk.runner.engines.multitalk.weights import original_to_diffusers, wan_config_from_original

    base, audio = original_audio()
    wan = build_wan(wan_config_from_original(tiny.REFERENCE_CONFIG), original_to_diffusers(base), torch.float32)
    wan.save_pretrained(tmp_path / model_files.DIFFUSERS_DIR / "transformer", max_shard_size="300KB")
    vae = tmp_path / model_files.DIFFUSERS_DIR / "vae"
    vae.mkdir(parents=True)
    (vae / "config.json").write_text("{}")
    save_file({"x": torch.zeros(1)}, str(vae / "diffusion_pytorch_model.safetensors"))
    write_multitalk(tmp_path, audio)
    write_wav2vec(tmp_path)
    write_encoder_stubs(tmp_path)
    return tmp_path


@pytest.mark.parametrize("layout", ["original_cache", "diffusers_cache"])
def test_load_layout_matches_reference(layout: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(layout)
    files = model_files.locate(root, strict_geometry=False)
    assert files.problems == []
    assert files.transformer_format == layout.removesuffix("_cache")
    if layout == "diffusers_cache":
        assert len(files.transformer_files) > 1, "the tiny transformer should be sharded"
    model = load_transformer(files, dtype=torch.float32)
    reference = load_file(str(tiny.DATA / "reference_forward.safetensors"))
    for persons in (1, 2):
        expected = reference[f"p{persons}_output"]
        parity.assert_parity(forward_run(model, persons), f"{layout}, forward, {persons} speaker(s)", expected)


def test_load_bf16(original_cache: Path) -> None:
    model = load_transformer(model_files.locate(original_cache, strict_geometry=False), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_locate_reports_missing_and_mismatched(original_cache: Path) -> None:
    files = model_files.locate(original_cache, strict_geometry=True)
    text = "\n".join(files.problems)
    assert "dim is 64, expected 5120" in text
    assert "audio_proj.proj1.weight has shape [32, 46080], expected [512, 46080]" in text

    shard = original_cache / model_files.ORIGINAL_DIR / "diffusion_pytorch_model-00002-of-00003.safetensors"
    shard.unlink()
    (original_cache / model_files.MULTITALK_FILE).unlink()
    (original_cache / model_files.WAV2VEC_DIR / "model.safetensors").unlink()
    problems = "\n".join(model_files.locate(original_cache, strict_geometry=False).problems)
    assert "missing shards diffusion_pytorch_model-00002-of-00003.safetensors" in problems
    assert "multitalk.safetensors (MeiGen-AI/MeiGen-MultiTalk audio weights)" in problems
    assert "no model.safetensors or pytorch_model.bin" in problems


def test_locate_empty_cache(tmp_path: Path) -> None:
    problems = model_files.locate(tmp_path).problems
    assert any("no Wan2.1 I2V transformer" in p for p in problems)
    assert any("chinese-wav2vec2-base" in p for p in problems)
    assert model_files.locate(tmp_path / "absent").problems == [f"model cache {tmp_path / 'absent'} does not exist"]


def test_multitalk_keys_split() -> None:
    base, audio = split_audio(tiny.seeded_state_dict())
    assert "audio_proj.proj1_vf.weight" in audio and "audio_blocks.1.audio_cross_attn.kv_linear.bias" in audio
    assert "audio_blocks.0.norm_x.weight" in audio
    assert not any("audio" in k or "norm_x" in k for k in base)


def test_merge_lora_original_naming(original_cache: Path, tmp_path: Path) -> None:
    """A LoRA in the original Wan naming (lora_down/lora_up/alpha, as FusionX/lightx2v ship) is merged."""
    model = load_transformer(model_files.locate(original_cache, strict_geometry=False), dtype=torch.float32)
    g = tiny.generator(99)
    rank, alpha, scale = 2, 4.0, 1.2
    lora = {}
    for block in range(tiny.LAYERS):
        for name in ("self_attn.q", "cross_attn.v", "ffn.0"):
            out_dim, in_dim = (tiny.FFN, tiny.DIM) if name == "ffn.0" else (tiny.DIM, tiny.DIM)
            prefix = f"diffusion_model.blocks.{block}.{name}"
            lora[f"{prefix}.lora_down.weight"] = torch.randn(rank, in_dim, generator=g)
            lora[f"{prefix}.lora_up.weight"] = torch.randn(out_dim, rank, generator=g)
            lora[f"{prefix}.alpha"] = torch.tensor(alpha)
    path = tmp_path / "speed.safetensors"
    save_file(lora, str(path))
    before = model.wan.blocks[1].attn1.to_q.weight.detach().clone()
    merged = merge_lora(model, path, scale)
    assert merged == 3 * tiny.LAYERS
    prefix = "diffusion_model.blocks.1.self_attn.q"
    delta = lora[f"{prefix}.lora_up.weight"] @ lora[f"{prefix}.lora_down.weight"] * (alpha / rank) * scale
    torch.testing.assert_close(model.wan.blocks[1].attn1.to_q.weight.detach(), before + delta, **TOL)


def test_original_vae_checkpoint_matches_reference(tmp_path: Path) -> None:
    """Wan2.1_VAE.pth naming -> diffusers' converter -> AutoencoderKLWan; encode/decode as MeiGen's WanVAE does."""
    from multitalk.runner.engines.multitalk.encoders import load_vae, vae_decode, vae_encode

    path = tmp_path / model_files.ORIGINAL_VAE
    torch.save(tiny.seeded_vae_state(), path)
    vae = load_vae(path, torch.float32, tiny.VAE_CONFIG)
    reference = load_file(str(tiny.DATA / "reference_vae.safetensors"))
    encoded = parity.run_with_rounding(lambda: {"latents": vae_encode(vae, tiny.vae_video())})
    parity.assert_parity(encoded, "VAE encode", reference["latents"], "latents")
    decoded = parity.run_with_rounding(lambda: {"video": vae_decode(vae, reference["latents"])})
    parity.assert_parity(decoded, "VAE decode", reference["decoded"], "video")
