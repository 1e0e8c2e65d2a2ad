"""InfiniteTalk (dubbing) against numbers computed by MeiGen's InfiniteTalk code (tiny config, fp32, CPU).

The reference outputs (data/reference_dubbing.safetensors) come from its `WanModel` forward
and its `generate_infinitetalk` with the tiny seeded weights, stand-in encoders and source
video of tiny.py; every output is compared within the fp32 rounding bound of parity.py.
- forward with video conditioning: the source frame's latent in latent frame 0, the VAE
  condition of that one frame (mask on frame 0 only), its CLIP tokens; 1 and 2 speakers;
- sampling, clip mode: two speakers with bboxes, 2 steps, text + audio guidance, colour match;
- streaming: 3 windows of one speaker (APG, text scale 1), whose conditioning frames are
  the source's frames 0, 4 and 8 (the 6-frame source holds its last frame for the third),
  and 2 windows of two speakers (L-RoPE across a window boundary).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from multitalk.runner.engines.multitalk import pipeline as pipeline_module
from multitalk.runner.engines.multitalk import sampler
from multitalk.runner.engines.multitalk.denoiser import LocalDenoiser
from multitalk.runner.engines.multitalk.pipeline import MultiTalkPipeline, Settings, condition_mask
from multitalk.runner.engines.multitalk.sampler import Guidance
from multitalk.runner.engines.multitalk.transformer import Conditioning, MultiTalkTransformer

from . import parity, tiny
from .test_parity_catches_bugs import assert_caught
from .test_sampling_parity import DECODED, make_pipeline


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(tiny.DATA / "reference_dubbing.safetensors"))


@pytest.fixture(scope="module")
def pipeline() -> MultiTalkPipeline:
    return make_pipeline()


@pytest.fixture(scope="module")
def model(pipeline: MultiTalkPipeline) -> MultiTalkTransformer:
    assert isinstance(pipeline.denoiser, LocalDenoiser)
    return pipeline.denoiser.transformer


def video_conditioned_forward(model: MultiTalkTransformer, persons: int) -> dict[str, torch.Tensor]:
    inp = tiny.seeded_inputs(persons)
    frame = tiny.forward_source_frame()
    latents = inp["latents"].clone()
    latents[:, :1] = tiny.encode_video(frame[None, :, None])[0]
    condition = torch.cat(
        [condition_mask(tiny.FRAMES, 1, tiny.LAT_H, tiny.LAT_W), tiny.video_conditioning(frame, tiny.FRAMES)], 1
    )
    cond = Conditioning(
        text=tiny.pad_text(inp["text"]),
        image=tiny.encode_image(frame[None, :, None]),
        condition=condition,
        audio=inp["audio"],
        masks=tiny.two_person_masks() if persons == 2 else None,
    )
    return {"output": model(latents[None], inp["timestep"], cond)[0]}


@pytest.mark.parametrize("persons", [1, 2])
def test_video_conditioned_forward_matches_reference(
    model: MultiTalkTransformer,
    reference: dict[str, torch.Tensor],
    persons: int,
) -> None:
    run = parity.run_with_rounding(lambda: video_conditioned_forward(model, persons))
    parity.assert_parity(run, f"dubbing forward, {persons} speaker(s)", reference[f"dub_p{persons}_output"])


def dub_settings(case: dict[str, Any]) -> Settings:
    return Settings(
        frame_num=case["frame_num"],
        motion_frames=case.get("motion_frames", tiny.DUB_MOTION_FRAMES),
        streaming=case["streaming"],
        max_frames=1000,
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


def dubbed(
    pipeline: MultiTalkPipeline,
    case: dict[str, Any],
    frames: int,
    asked: list[int],
    frame_of: Callable[[int], int] = lambda index: index,
) -> dict[str, Any]:
    """Each window's latents as handed to the decoder, the window lengths, and the first `frames` frames."""
    from multitalk.runner.engines.multitalk.person_masks import image_masks, latent_masks

    video = tiny.source_video(case["source_frames"])

    def source(index: int) -> torch.Tensor:
        asked.append(index)
        return tiny.source_frame(video, frame_of(index))

    masks = None
    if case["persons"] == 2:
        boxes = image_masks(tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 2, tiny.BBOXES)
        masks = latent_masks(boxes, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE // 8, tiny.IMAGE_SIZE // 8)
    DECODED.clear()
    audio = tiny.audio_features(case["persons"], case["audio_frames"])
    placeholder = torch.zeros(3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE)  # unused with a source
    chunks = list(pipeline.generate(placeholder, audio, tiny.PROMPT, dub_settings(case), masks, source=source))
    out = torch.cat(chunks, dim=1)
    assert out.shape[1] >= frames
    lengths = torch.tensor([float(c.shape[1]) for c in chunks])
    return {"video": out[:, :frames], "lengths": lengths, **{f"latents_{i}": x for i, x in enumerate(DECODED)}}


@pytest.mark.parametrize("name", sorted(tiny.DUBBING_CASES))
def test_dubbing_matches_reference(pipeline: MultiTalkPipeline, reference: dict[str, torch.Tensor], name: str) -> None:
    case = tiny.DUBBING_CASES[name]
    expected = reference[f"{name}_video"]
    asked: list[int] = []
    run = parity.run_with_rounding(lambda: dubbed(pipeline, case, expected.shape[1], asked))
    windows = sum(1 for key in reference if key.startswith(f"{name}_latents_"))
    assert len(run.outputs["lengths"]) == windows
    for window in range(windows):
        parity.assert_parity(
            run, f"{name}, latents of window {window}", reference[f"{name}_latents_{window}"], f"latents_{window}"
        )
    parity.assert_parity(run, f"{name}, frames", expected, "video")
    step = case["frame_num"] - case.get("motion_frames", tiny.DUB_MOTION_FRAMES)
    # Per window, the source frame at the window's start (twice over: plain and simulated run).
    assert sorted(set(asked)) == [step * w for w in range(windows)]
    if case["streaming"]:
        assert windows >= 2
        assert int(run.outputs["lengths"][1]) == step


def test_short_dub_is_one_window(pipeline: MultiTalkPipeline) -> None:
    """Clip mode (speech within one window shorter than the motion frames): one window, frame 0 of the source."""
    case = {**tiny.DUBBING_CASES["dub_streaming_one_person"], "streaming": False, "frame_num": 5, "audio_frames": 6}
    settings = dub_settings(case)
    settings.motion_frames = 9  # the engine's; unused in clip mode
    asked: list[int] = []
    video = tiny.source_video(3)

    def source(index: int) -> torch.Tensor:
        asked.append(index)
        return tiny.source_frame(video, index)

    audio = tiny.audio_features(1, 6)
    placeholder = torch.zeros(3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE)
    chunks = list(pipeline.generate(placeholder, audio, tiny.PROMPT, settings, source=source))
    assert [c.shape[1] for c in chunks] == [5] and asked == [0]


def renoised_motion(*args: Any, **kwargs: Any) -> torch.Tensor:
    """MultiTalk's way: motion latents re-noised to the current time instead of held clean."""
    return sampler.denoise(*args, **{**kwargs, "clean_motion": False, "draw_motion_noise": True})


@pytest.mark.slow
@pytest.mark.parametrize("bug", ["every window conditioned on the first source frame", "motion frames re-noised"])
def test_dubbing_bug_exceeds_bound(
    pipeline: MultiTalkPipeline, reference: dict[str, torch.Tensor], bug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port that conditioned every window as MultiTalk's or InfiniteTalk's first does is told apart by far."""
    name = "dub_streaming_two_persons"
    case = tiny.DUBBING_CASES[name]
    frame_of: Callable[[int], int] = lambda index: index  # noqa: E731
    if bug == "motion frames re-noised":
        monkeypatch.setattr(pipeline_module, "denoise", renoised_motion)
    else:
        frame_of = lambda index: 0  # noqa: E731
    frames = reference[f"{name}_video"].shape[1]
    run = parity.run_with_rounding(lambda: dubbed(pipeline, case, frames, [], frame_of))
    assert_caught(run, f"bug: {bug} (dubbing, window 1)", reference[f"{name}_latents_1"], "latents_1")
