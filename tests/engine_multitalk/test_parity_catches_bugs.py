"""The parity bound still fails a real port bug: small deliberate errors in our port exceed it by far.

Each case reruns a parity comparison of test_transformer_parity / test_sampling_parity
with one small mistake put into our side, the kind a port makes: a bbox read columns
first, a dropped attention head, a timestep off by one, the audio one frame late, a wrong
L-RoPE range, the two guidance scales swapped. The mistake must push the error beyond
the bound by at least BY_FAR, so that no CPU's rounding could hide it or fake it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from multitalk.runner.engines.multitalk import lrope
from multitalk.runner.engines.multitalk.pipeline import MultiTalkPipeline
from multitalk.runner.engines.multitalk.transformer import Conditioning, MultiTalkTransformer

from . import parity, tiny
from .test_sampling_parity import make_pipeline, sampled
from .test_structure import tiny_model
from .test_transformer_parity import conditioning

BY_FAR = 10.0  # error / bound: the bound moves by well under 2x between CPU code paths

Inputs = tuple[torch.Tensor, torch.Tensor, Conditioning]
Mutation = Callable[[MultiTalkTransformer, Inputs, pytest.MonkeyPatch], Inputs]


def swapped_persons(model: MultiTalkTransformer, inputs: Inputs, mp: pytest.MonkeyPatch) -> Inputs:
    latents, timestep, cond = inputs
    assert cond.masks is not None
    cond.masks = cond.masks[[1, 0, 2]]  # person 1's box given to person 2 and back
    return latents, timestep, cond


def dropped_head(model: MultiTalkTransformer, inputs: Inputs, mp: pytest.MonkeyPatch) -> Inputs:
    attn = model.wan.blocks[0].attn1
    head_dim = tiny.DIM // tiny.HEADS

    def zero_first_head(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        heads = args[0].clone()
        heads[..., :head_dim] = 0
        return (heads, *args[1:])

    attn.to_out[0].register_forward_pre_hook(zero_first_head)  # the model is this test's own
    return inputs


def timestep_off_by_one(model: MultiTalkTransformer, inputs: Inputs, mp: pytest.MonkeyPatch) -> Inputs:
    latents, timestep, cond = inputs
    return latents, timestep + 1, cond


def audio_one_frame_late(model: MultiTalkTransformer, inputs: Inputs, mp: pytest.MonkeyPatch) -> Inputs:
    latents, timestep, cond = inputs
    cond.audio = cond.audio.roll(1, dims=1)
    return latents, timestep, cond


def person_range_off_by_one(model: MultiTalkTransformer, inputs: Inputs, mp: pytest.MonkeyPatch) -> Inputs:
    mp.setattr(lrope, "PERSON_RANGES", (lrope.PERSON_RANGES[0], (20.0, 23.0)))  # 20..23 instead of 20..24
    return inputs


FORWARD_BUGS: dict[str, Mutation] = {
    "persons swapped": swapped_persons,
    "first head dropped": dropped_head,
    "timestep off by one": timestep_off_by_one,
    "audio one frame late": audio_one_frame_late,
    "L-RoPE person 2 range off by one": person_range_off_by_one,
}


def assert_caught(run: parity.Run, name: str, expected: torch.Tensor, output: str) -> None:
    result = parity.compare(name, run.outputs[output], expected, run.simulated[output], run.reductions)
    parity.record(result)
    assert result.margin > BY_FAR, f"bug not caught by far: {result.describe()}"


@pytest.mark.parametrize("bug", sorted(FORWARD_BUGS))
def test_forward_bug_exceeds_bound(bug: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    assert isinstance(model, MultiTalkTransformer)
    latents, timestep, cond = FORWARD_BUGS[bug](model, conditioning(2), monkeypatch)
    run = parity.run_with_rounding(lambda: {"output": model(latents, timestep, cond)[0]})
    expected = load_file(str(tiny.DATA / "reference_forward.safetensors"))["p2_output"]
    assert_caught(run, f"bug: {bug} (forward, 2 speakers)", expected, "output")


# The clip case with two persons: a bbox misread and the guidance scales mixed up.
SAMPLING_BUGS: dict[str, tuple[dict[str, Any], tuple[tuple[float, float, float, float], ...]]] = {
    "bbox read columns first": (
        tiny.SAMPLING_CASES["clip_two_persons"],
        tuple((left, top, right, bottom) for top, left, bottom, right in tiny.BBOXES),
    ),
    "text and audio scales swapped": (
        {**tiny.SAMPLING_CASES["clip_two_persons"], "text_scale": 4.0, "audio_scale": 5.0},
        tiny.BBOXES,
    ),
}


@pytest.fixture(scope="module")
def pipeline() -> MultiTalkPipeline:
    return make_pipeline()


@pytest.mark.slow
@pytest.mark.parametrize("bug", sorted(SAMPLING_BUGS))
def test_sampling_bug_exceeds_bound(pipeline: MultiTalkPipeline, bug: str) -> None:
    case, bboxes = SAMPLING_BUGS[bug]
    assert bboxes != tiny.BBOXES or case != tiny.SAMPLING_CASES["clip_two_persons"]
    expected = load_file(str(tiny.DATA / "reference_sampling.safetensors"))["clip_two_persons_video"]
    run = parity.run_with_rounding(lambda: sampled(pipeline, case, expected.shape[1], bboxes))
    assert_caught(run, f"bug: {bug} (clip, frames)", expected, "video")
