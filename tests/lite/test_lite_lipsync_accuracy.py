"""Lip-sync accuracy on speech the engine was not tuned on, measured on the rendered MP4.

Held-out espeak-ng sentences, voices (male and female, en-us and en-gb) and rates go through
the runner's pipeline at 480x480; mediapipe's attention face mesh measures the mouth on the
decoded H.264 frames (never the engine's own track). Ground truth is pocketsphinx forced
alignment of the known text and, independently, espeak-ng's own phoneme timing; both must
pass. benchmarks/lite_lipsync.py prints the same figures per voice for the whole corpus.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lipsync.corpus import HELD_OUT, OTHER_LANGUAGES, Corpus
from lipsync.evaluate import evaluate, evaluate_other_language
from lipsync.measure import MouthMeter
from lipsync.portraits import write_portrait
from lipsync.score import Tally

pytestmark = pytest.mark.slow

# The goals: from speech alone, and with a transcript.
SPEECH_CLOSED, SPEECH_OPEN = 0.90, 0.85
TEXT_CLOSED, TEXT_OPEN = 0.97, 0.90


@pytest.fixture(scope="module")
def meter() -> MouthMeter:
    return MouthMeter()


@pytest.fixture(scope="module")
def portrait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_portrait(tmp_path_factory.mktemp("portrait") / "astronaut-head.png")


def _totals(corpus: Corpus, portrait: Path, work: Path, text: bool, meter: MouthMeter) -> tuple[Tally, Tally]:
    aligned, espeak = Tally(), Tally()
    for clip in evaluate(corpus, portrait, work, with_transcript=text, meter=meter):
        aligned.add(clip.aligned)
        espeak.add(clip.espeak)
        print(
            f"{clip.voice.label} {clip.rate} wpm: closed {clip.aligned.closed:.2f}/{clip.espeak.closed:.2f} "
            f"open {clip.aligned.opened:.2f}/{clip.espeak.opened:.2f} (aligned/espeak truth)"
        )
    return aligned, espeak


def test_speech_alone_closes_and_opens(meter: MouthMeter, portrait: Path, tmp_path: Path) -> None:
    corpus = Corpus(HELD_OUT.sentences, HELD_OUT.voices, (120, 200))  # the extremes of the rates
    aligned, espeak = _totals(corpus, portrait, tmp_path, False, meter)
    assert aligned.closed_total >= 300 and aligned.open_total >= 150
    for name, t in (("aligned", aligned), ("espeak", espeak)):
        assert t.closed >= SPEECH_CLOSED, f"{name} truth: closed on {t.closed:.3f} of M/B/P; misses {t.misses[:12]}"
        assert t.opened >= SPEECH_OPEN, f"{name} truth: opened on {t.opened:.3f} of open vowels; misses {t.misses[:12]}"


def test_transcript_closes_and_opens(meter: MouthMeter, portrait: Path, tmp_path: Path) -> None:
    corpus = Corpus(HELD_OUT.sentences, HELD_OUT.voices, (160,))
    aligned, espeak = _totals(corpus, portrait, tmp_path, True, meter)
    assert aligned.closed_total >= 150
    for name, t in (("aligned", aligned), ("espeak", espeak)):
        assert t.closed >= TEXT_CLOSED, f"{name} truth: closed on {t.closed:.3f} of M/B/P; misses {t.misses[:12]}"
        assert t.opened >= TEXT_OPEN, f"{name} truth: opened on {t.opened:.3f} of open vowels; misses {t.misses[:12]}"


def test_other_languages_move_plausibly(meter: MouthMeter, portrait: Path, tmp_path: Path) -> None:
    """Spanish, German and French from speech alone: the English phone loop only guesses, the
    acoustic cues (loudness, F1 openness, closures) carry the mouth."""
    total = Tally()
    for result in evaluate_other_language(OTHER_LANGUAGES, portrait, tmp_path, meter):
        total.add(result.espeak)
        print(f"{result.voice.label}: closed {result.espeak.closed:.2f} open {result.espeak.opened:.2f} "
              f"r(aperture, loudness) {result.loudness_correlation:.2f}")  # fmt: skip
        assert result.loudness_correlation > 0.4, f"{result.voice.label}: the mouth does not follow the voice"
    assert total.closed_total >= 25 and total.open_total >= 12
    assert total.closed >= 0.8, f"closed on {total.closed:.3f} of M/B/P; misses {total.misses}"
    assert total.opened >= 0.7, f"opened on {total.opened:.3f} of open vowels; misses {total.misses}"
