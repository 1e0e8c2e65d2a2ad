"""Fixtures for the lite engine: espeak-ng speech with known words, the astronaut portrait, a
loaded engine, and a helper that builds the engine's inputs the way the runner does."""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from lite_helpers import Speech, fit
from scipy.signal import resample_poly
from skimage import data

from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE
from multitalk.runner.engines.lite import LiteEngine
from multitalk.runner.engines.lite.landmarks import FaceFinder

Audio = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]

# Words chosen for lip closures (M, B, P) next to wide-open vowels (AA, AE).
SENTENCE = "Bob and Pam bought a map. Papa might buy a lamp. My mom is calm."
OTHER_SENTENCE = "How are you today? I am fine, thanks a lot."


def _espeak(text: str, path: Path, voice: str = "en-us") -> Audio:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is required for the lite tests (Debian package espeak-ng; .ci/run installs it)")
    subprocess.run([exe, "-v", voice, "-s", "140", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    gcd = np.gcd(rate, ENGINE_SAMPLE_RATE)
    resampled: Audio = resample_poly(audio, ENGINE_SAMPLE_RATE // gcd, rate // gcd).astype(np.float32)
    # Half a second of silence on both sides, like a real recording.
    pad = np.zeros(ENGINE_SAMPLE_RATE // 2, dtype=np.float32)
    return np.concatenate([pad, resampled, pad])


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    return Speech(_espeak(SENTENCE, tmp_path_factory.mktemp("speech") / "sentence.wav"), SENTENCE)


@pytest.fixture(scope="session")
def other_speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    path = tmp_path_factory.mktemp("speech") / "other.wav"
    return Speech(_espeak(OTHER_SENTENCE, path, voice="en-gb"), OTHER_SENTENCE)


@pytest.fixture(scope="session")
def portrait() -> Image:
    """skimage's astronaut (Eileen Collins, NASA, public domain) fitted to 480x480."""
    return fit(data.astronaut(), 480, 480)


@pytest.fixture(scope="session")
def engine() -> Iterator[LiteEngine]:
    eng = LiteEngine(Path("/nonexistent-model-cache"))
    eng.load()
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def finder() -> Iterator[FaceFinder]:
    """An independent landmark detector to measure what the engine rendered."""
    f = FaceFinder()
    yield f
    f.close()
