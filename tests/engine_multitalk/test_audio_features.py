"""The wav2vec2 audio path against MeiGen's (tiny seeded wav2vec2, fp32, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from multitalk.runner.engines.multitalk.audio_features import (
    TARGET_LUFS,
    AudioEncoder,
    loudness_normalize,
    video_frames,
)

from . import parity, tiny


def test_features_match_reference(tmp_path: Path) -> None:
    model = tiny.tiny_wav2vec()
    model.save_pretrained(tmp_path / "w2v")  # type: ignore[attr-defined]
    encoder = AudioEncoder(tmp_path / "w2v")
    run = parity.run_with_rounding(lambda: {"features": encoder(tiny.speech().numpy())})
    expected = load_file(str(tiny.DATA / "reference_audio.safetensors"))["features"]
    assert expected.shape == (video_frames(len(tiny.speech())), 2, 32)
    parity.assert_parity(run, "wav2vec2 features", expected, "features")


def test_loudness_normalised_to_minus_23_lufs() -> None:
    import pyloudnorm

    quiet = (0.01 * tiny.speech(2.0)).numpy()
    out = loudness_normalize(quiet)
    assert pyloudnorm.Meter(16000).integrated_loudness(out.astype(np.float64)) == pytest.approx(TARGET_LUFS, abs=0.1)
    silence = np.zeros(16000, dtype=np.float32)
    assert np.array_equal(loudness_normalize(silence), silence)
    short = (0.1 * tiny.speech(0.2)).numpy()  # under one 400 ms gating block: unchanged
    assert np.array_equal(loudness_normalize(short), short)
