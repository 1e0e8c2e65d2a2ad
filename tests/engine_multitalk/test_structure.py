"""Structure at full size (on the meta device, no memory) and the speed/memory options."""

from __future__ import annotations

import torch

from multitalk.runner.engines.multitalk.assemble import build_transformer
from multitalk.runner.engines.multitalk.audio_adapter import MultiTalkAudioAdapter
from multitalk.runner.engines.multitalk.residency import OffloadedBlocks
from multitalk.runner.engines.multitalk.teacache import TeaCache
from multitalk.runner.engines.multitalk.weights import original_to_diffusers, split_audio, wan_config_from_original

from . import tiny
from .test_transformer_parity import TOL, conditioning


def test_full_size_parameter_counts_match_published_model() -> None:
    """Wan2.1-I2V-14B: 16,394,878,784; MultiTalk audio: 2,487,168,000 (74,214,400 + 40 x 60,323,840)."""
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        wan = WanTransformer3DModel(image_dim=1280, added_kv_proj_dim=5120, in_channels=36)
        audio = MultiTalkAudioAdapter()
    assert sum(p.numel() for p in wan.parameters()) == 16_394_878_784
    assert sum(p.numel() for p in audio.parameters()) == 2_487_168_000
    assert sum(p.numel() for p in audio.audio_proj.parameters()) == 74_214_400
    assert sum(p.numel() for p in audio.audio_blocks[0].parameters()) == 60_323_840


def tiny_model() -> torch.nn.Module:
    base, audio = split_audio(tiny.seeded_state_dict())
    config = wan_config_from_original(tiny.REFERENCE_CONFIG)
    return build_transformer(config, original_to_diffusers(base), audio, dtype=torch.float32)


def test_block_offload_gives_same_output() -> None:
    model = tiny_model()
    latents, timestep, cond = conditioning(2)
    with torch.no_grad():
        expected = model(latents, timestep, cond)
        # blocks visit the execution device one at a time
        model.block_residency = OffloadedBlocks(model.block_pairs(), torch.device("cpu"))
        streamed = model(latents, timestep, cond)
    torch.testing.assert_close(streamed, expected, **TOL)


def test_teacache_skips_and_reuses_residual() -> None:
    model = tiny_model()
    latents, timestep, cond = conditioning(1)
    cache = TeaCache(threshold=1e9, steps=10, warmup_steps=1)  # huge threshold: skip whenever allowed
    model.teacache = cache
    with torch.no_grad():
        first = model(latents, timestep, cond)  # computes (warm-up step)
        second = model(latents, timestep, cond)  # same modulation: skipped, residual reused
    assert cache.skipped == 1
    torch.testing.assert_close(second, first, **TOL)
    cache = TeaCache(threshold=0.0, steps=10, warmup_steps=1)  # zero threshold: always computes
    model.teacache = cache
    with torch.no_grad():
        model(latents, timestep, cond)
        model(latents, timestep, cond)
    assert cache.skipped == 0


def test_boxes_sticking_out_of_the_frame_are_clamped() -> None:
    from multitalk.runner.engines.multitalk.person_masks import image_masks

    masks = image_masks(10, 20, 2, [(-3.0, -5.0, 4.0, 6.0), (5.0, 15.0, 14.0, 26.0)])
    assert masks[0, :4, :6].all() and masks[0].sum() == 4 * 6
    assert masks[1, 5:, 15:].all() and masks[1].sum() == 5 * 5
    assert masks[2].sum() == 200 - 24 - 25
