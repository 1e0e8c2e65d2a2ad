"""Clip-mode and streaming sampling against MeiGen's generate() (tiny model and encoders, fp32, CPU).

Each window's latents and the final frames are compared within the fp32 rounding bound of
parity.py (simulated through the whole generation: guidance, windows, colour matching).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from multitalk.runner.engines.multitalk.assemble import build_transformer
from multitalk.runner.engines.multitalk.person_masks import BBox, image_masks, latent_masks, token_masks
from multitalk.runner.engines.multitalk.pipeline import Encoders, MultiTalkPipeline, Settings
from multitalk.runner.engines.multitalk.sampler import Guidance, shifted_timesteps
from multitalk.runner.engines.multitalk.weights import original_to_diffusers, split_audio, wan_config_from_original

from . import parity, tiny

DECODED: list[torch.Tensor] = []  # latents each window handed to the decoder


def recording_decode(latents: torch.Tensor) -> torch.Tensor:
    DECODED.append(latents[0].clone())
    return tiny.decode_latents(latents)


def make_pipeline() -> MultiTalkPipeline:
    """Our pipeline on the tiny seeded transformer, with the tiny encoders and the recording decoder."""
    base, audio = split_audio(tiny.seeded_state_dict())
    model = build_transformer(
        wan_config_from_original(tiny.REFERENCE_CONFIG), original_to_diffusers(base), audio, dtype=torch.float32
    )
    encoders = Encoders(tiny.encode_text, tiny.encode_image, tiny.encode_video, recording_decode)
    return MultiTalkPipeline(model, encoders, torch.device("cpu"))


@pytest.fixture(scope="module")
def pipeline() -> MultiTalkPipeline:
    return make_pipeline()


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(tiny.DATA / "reference_sampling.safetensors"))


def run_case(
    pipeline: MultiTalkPipeline, case: dict[str, Any], bboxes: tuple[BBox, ...] = tiny.BBOXES
) -> list[torch.Tensor]:
    image = (tiny.reference_image().permute(2, 0, 1) / 255 - 0.5) * 2
    masks = None
    if case["persons"] == 2:
        source = image_masks(tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 2, bboxes)
        masks = latent_masks(source, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE // 8, tiny.IMAGE_SIZE // 8)
        # Every class owns a token, so L-RoPE binding is really exercised (no empty-mask corner case).
        per_class = token_masks(masks, tiny.IMAGE_SIZE // 16, tiny.IMAGE_SIZE // 16).sum(1)
        assert per_class.min() >= 1, per_class
    settings = Settings(
        frame_num=case["frame_num"],
        motion_frames=case.get("motion_frames", 25),
        streaming=case["streaming"],
        steps=case["steps"],
        shift=case["shift"],
        seed=case["seed"],
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
    return list(pipeline.generate(image, audio, tiny.PROMPT, settings, masks))


def sampled(
    pipeline: MultiTalkPipeline, case: dict[str, Any], frames: int, bboxes: tuple[BBox, ...] = tiny.BBOXES
) -> dict[str, torch.Tensor]:
    """Each window's latents as handed to the decoder, the window lengths, and the first `frames` frames."""
    DECODED.clear()
    chunks = run_case(pipeline, case, bboxes)
    video = torch.cat(chunks, dim=1)
    assert video.shape[1] >= frames
    lengths = torch.tensor([float(c.shape[1]) for c in chunks])
    return {"video": video[:, :frames], "lengths": lengths, **{f"latents_{i}": x for i, x in enumerate(DECODED)}}


@pytest.mark.parametrize("name", sorted(tiny.SAMPLING_CASES))
def test_sampling_matches_reference(pipeline: MultiTalkPipeline, reference: dict[str, torch.Tensor], name: str) -> None:
    case = tiny.SAMPLING_CASES[name]
    expected = reference[f"{name}_video"]
    # The reference trims its streamed output by its audio padding; compare the frames it kept.
    run = parity.run_with_rounding(lambda: sampled(pipeline, case, expected.shape[1]))
    expected_windows = sum(1 for key in reference if key.startswith(f"{name}_latents_"))
    assert len(run.outputs["lengths"]) == expected_windows
    for window in range(expected_windows):
        parity.assert_parity(
            run, f"{name}, latents of window {window}", reference[f"{name}_latents_{window}"], f"latents_{window}"
        )
    parity.assert_parity(run, f"{name}, frames", expected, "video")
    if case["streaming"]:
        # Window boundary: the second window starts with the motion frames the first one ended on.
        assert int(run.outputs["lengths"][1]) == case["frame_num"] - case["motion_frames"]


def test_timesteps_shift() -> None:
    ts = shifted_timesteps(4, 5.0)
    assert len(ts) == 5 and float(ts[0]) == pytest.approx(1000.0) and float(ts[-1]) == 0.0
    frac = 0.667  # linspace(1000, 1, 4)[1] = 667
    assert float(ts[1]) == pytest.approx(5 * frac / (1 + 4 * frac) * 1000, rel=1e-6)
    assert all(float(a) > float(b) for a, b in itertools.pairwise(ts))


def test_guidance_evaluations() -> None:
    assert Guidance(5.0, 4.0).branches() == ("cond", "drop_text", "uncond")
    assert Guidance(1.0, 4.0).branches() == ("cond", "drop_audio")
