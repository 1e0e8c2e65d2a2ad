"""InfiniteTalk's weights in the model cache: found per speaker set, listed by `check`, loaded for dubbing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from multitalk.runner.engines.multitalk import model_files
from multitalk.runner.engines.multitalk.loader import load_transformer

from . import parity, tiny
from .test_dubbing_parity import video_conditioned_forward
from .test_loading import diffusers_cache, original_audio, original_cache  # noqa: F401 (fixtures)

OVERRIDDEN = ("head.head.weight", "proj_out.weight")  # a Wan key (original naming) and its diffusers name


def write_infinitetalk(root: Path, variant: str, state: dict[str, torch.Tensor]) -> Path:
    path = root / model_files.INFINITETALK_DIR / model_files.INFINITETALK_FILES[variant]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_check_lists_infinitetalk_files(original_cache: Path) -> None:  # noqa: F811
    files = model_files.locate(original_cache, strict_geometry=False)
    assert files.ok and files.infinitetalk == {}
    assert files.audio_weights(dubbing=True, persons=1) is None
    dubbing = "\n".join(files.dubbing_problems)
    assert "single/infinitetalk.safetensors (MeiGen-AI/InfiniteTalk weights, for dubbing)" in dubbing
    assert "multi/infinitetalk.safetensors" in dubbing

    _, audio = original_audio()
    single = write_infinitetalk(original_cache, "single", audio)
    broken = original_cache / model_files.INFINITETALK_DIR / model_files.INFINITETALK_FILES["multi"]
    broken.parent.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(broken))
    files = model_files.locate(original_cache, strict_geometry=False)
    assert files.ok  # MultiTalk renders are unaffected either way
    assert files.infinitetalk == {"single": single}
    assert files.audio_weights(dubbing=True, persons=1) == single
    assert files.audio_weights(dubbing=True, persons=2) is None
    assert files.audio_weights() == files.multitalk
    assert files.summary()["infinitetalk"] == {"single": str(single), "multi": None}
    assert any("multi/infinitetalk.safetensors: no audio_proj.* keys" in p for p in files.summary()["dubbingProblems"])
    # The same geometry checks as multitalk.safetensors: the tiny file is not the 14B model's.
    strict = model_files.locate(original_cache, strict_geometry=True)
    assert any(
        "single/infinitetalk.safetensors: audio_proj.proj1.weight has shape" in p for p in strict.dubbing_problems
    )


@pytest.mark.parametrize("layout", ["original_cache", "diffusers_cache"])
def test_infinitetalk_weights_replace_multitalk_and_wan_keys(layout: str, request: pytest.FixtureRequest) -> None:
    """The dubbing transformer takes its audio weights (and any Wan key it holds) from infinitetalk.safetensors."""
    root: Path = request.getfixturevalue(layout)
    base, audio = original_audio()
    # multitalk.safetensors now holds other audio values: only InfiniteTalk's give the reference numbers.
    save_file({k: (2 * v).contiguous() for k, v in audio.items()}, str(root / model_files.MULTITALK_FILE))
    write_infinitetalk(root, "multi", {**audio, OVERRIDDEN[0]: base[OVERRIDDEN[0]]})
    files = model_files.locate(root, strict_geometry=False)
    path = files.audio_weights(dubbing=True, persons=2)
    assert path is not None
    model = load_transformer(files, dtype=torch.float32, audio_file=path)
    reference = load_file(str(tiny.DATA / "reference_dubbing.safetensors"))
    for persons in (1, 2):
        run = parity.run_with_rounding(lambda persons=persons: video_conditioned_forward(model, persons))
        parity.assert_parity(
            run, f"{layout}, InfiniteTalk weights, {persons} speaker(s)", reference[f"dub_p{persons}_output"]
        )

    changed = {**audio, OVERRIDDEN[0]: torch.full_like(base[OVERRIDDEN[0]], 0.25)}
    write_infinitetalk(root, "multi", changed)
    model = load_transformer(model_files.locate(root, strict_geometry=False), dtype=torch.float32, audio_file=path)
    assert bool((model.wan.state_dict()[OVERRIDDEN[1]] == 0.25).all())
    # MultiTalk's own file never overrides Wan keys (audio keys only, as before).
    plain = load_transformer(model_files.locate(root, strict_geometry=False), dtype=torch.float32)
    assert not bool((plain.wan.state_dict()[OVERRIDDEN[1]] == 0.25).all())
