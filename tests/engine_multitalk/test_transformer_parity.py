"""Our MultiTalk transformer against numbers computed by MeiGen's reference code (tiny config, fp32, CPU).

Outputs are compared within the fp32 rounding bound of parity.py, which holds on any CPU's
kernels; TOL is for ours against ours (same kernels, one process).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from multitalk.runner.engines.multitalk.assemble import build_transformer
from multitalk.runner.engines.multitalk.audio_adapter import group_latent_windows
from multitalk.runner.engines.multitalk.lrope import (
    audio_key_positions,
    reference_attention_map,
    video_token_positions,
)
from multitalk.runner.engines.multitalk.transformer import Conditioning, MultiTalkTransformer, embed_conditions
from multitalk.runner.engines.multitalk.weights import original_to_diffusers, split_audio, wan_config_from_original

from . import parity, tiny

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(tiny.DATA / "reference_forward.safetensors"))


@pytest.fixture(scope="module")
def model() -> MultiTalkTransformer:
    base, audio = split_audio(tiny.seeded_state_dict())
    config = wan_config_from_original(tiny.REFERENCE_CONFIG)
    return build_transformer(config, original_to_diffusers(base), audio, dtype=torch.float32)


def conditioning(persons: int) -> tuple[torch.Tensor, torch.Tensor, Conditioning]:
    inp = tiny.seeded_inputs(persons)
    cond = Conditioning(
        text=tiny.pad_text(inp["text"]),
        image=inp["clip"],
        condition=inp["condition"][None],
        audio=inp["audio"],
        masks=tiny.two_person_masks() if persons == 2 else None,
    )
    return inp["latents"][None], inp["timestep"], cond


def forward_run(model: MultiTalkTransformer, persons: int) -> parity.Run:
    """One forward on the seeded inputs, plainly and with simulated rounding (output "output")."""
    latents, timestep, cond = conditioning(persons)
    return parity.run_with_rounding(lambda: {"output": model(latents, timestep, cond)[0]})


@pytest.mark.parametrize("persons", [1, 2])
def test_forward_matches_reference(
    model: MultiTalkTransformer, reference: dict[str, torch.Tensor], persons: int
) -> None:
    parity.assert_parity(forward_run(model, persons), f"forward, {persons} speaker(s)", reference[f"p{persons}_output"])


@pytest.mark.parametrize("persons", [1, 2])
def test_audio_adapter_matches_reference(
    model: MultiTalkTransformer, reference: dict[str, torch.Tensor], persons: int
) -> None:
    windows = tiny.seeded_inputs(persons)["audio"]
    run = parity.run_with_rounding(lambda: {"tokens": model.audio.audio_proj(*group_latent_windows(windows))})
    parity.assert_parity(run, f"audio tokens, {persons} speaker(s)", reference[f"p{persons}_audio_tokens"], "tokens")


def test_latent_windows_shapes() -> None:
    windows = torch.arange(2 * 9 * 5, dtype=torch.float32).view(2, 9, 5, 1, 1)
    first, later = group_latent_windows(windows)
    assert first.shape == (2, 1, 5, 1, 1) and later.shape == (2, 2, 8, 1, 1)
    # latent frame 1 = video frames 1..4: left half of frame 1, centres of 2 and 3, right half of 4
    frame = windows[0, :, :, 0, 0]
    expected = torch.cat([frame[1, :3], frame[2, 2:3], frame[3, 2:3], frame[4, 2:]])
    torch.testing.assert_close(later[0, 0, :, 0, 0], expected)


def test_lrope_positions_match_reference(reference: dict[str, torch.Tensor]) -> None:
    # Elementwise arithmetic on the reference's own map: correctly rounded, the same on every CPU.
    positions = video_token_positions(reference["p2_attention_map_block0"])
    torch.testing.assert_close(positions, reference["p2_query_positions_block0"], **TOL)
    keys = audio_key_positions(2 * tiny.AUDIO_TOKENS, tiny.LAT_T)
    torch.testing.assert_close(keys, reference["p2_key_positions_block0"])
    assert set(keys.tolist()) == {2.0, 22.0}
    assert positions.min() >= 0 and positions.max() <= 24


def test_reference_attention_map_chunking() -> None:
    """Head-chunked map equals the direct softmax-mask-mean formula."""
    g = tiny.generator(7)
    q, k = torch.randn(1, 48, 4, 16, generator=g), torch.randn(1, 48, 4, 16, generator=g)
    masks = tiny.two_person_masks()[:, ::2, ::2].flatten(1)
    probs = torch.einsum("bshd,brhd->bhsr", q / 4.0, k[:, :16]).softmax(-1)
    direct = torch.stack([(probs * m).sum(-1).div(m.sum()).mean(1)[0] for m in masks])
    for chunk in (1, 3, 4):
        torch.testing.assert_close(reference_attention_map(q, k, 16, masks, head_chunk=chunk), direct, **TOL)


def test_timestep_sinusoid_in_float64(model: MultiTalkTransformer) -> None:
    """The sinusoid is taken in float64 as the original Wan does, not in diffusers' float32.

    Their difference (9e-6 here, ~1e-4 at the full model's 256 frequencies) reaches the
    output at the size of fp32 rounding, below what a CPU-independent parity bound
    resolves, so the choice is pinned here.
    """
    embedder = model.wan.condition_embedder
    timestep = torch.tensor([999.0, 733.0, 41.5])
    half = tiny.FREQ_DIM // 2
    angles = timestep.double()[:, None] * 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    expected = torch.cat([angles.cos(), angles.sin()], dim=1).float()
    seen: list[torch.Tensor] = []
    hook = embedder.time_embedder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        with torch.no_grad():
            embed_conditions(embedder, timestep, conditioning(1)[2], torch.float32)
    finally:
        hook.remove()
    # float64 cos/sin are within an ulp of float64 on any CPU: the same float32 values.
    atol = 1e-7
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=atol)
    in_float32 = embedder.timesteps_proj(timestep)  # diffusers' own sinusoid: told apart by far
    assert (in_float32 - expected).abs().max() > 20 * atol
