"""Lite engine lip-sync accuracy per voice, measured on rendered video.

For each espeak-ng voice and speaking rate of the held-out corpus (tests/lipsync/corpus.py:
sentences, voices and rates the engine was not tuned on) the sentences are spoken in one clip,
rendered through the runner's pipeline at 480x480 (H.264), decoded, and the mouth measured
with mediapipe's attention face mesh. Scores against two ground truths: pocketsphinx forced
alignment of the known text ("aligned") and espeak-ng's own phoneme timing ("espeak"):

- closed: M/B/P phones whose smallest aperture within the phone +-1 frame is <= 30 % of the
  clip's p5-p95 aperture range (goal: 90 % from speech alone, 97 % with a transcript);
- open: AA AE AH AO AW AY of 60 ms or more that open to >= 50 % of it (goal: 85 % / 90 %);
- T/D/N/K/G/NG that also look closed (not a goal: the price of closing on guessed closures).

Then speech alone in other languages (espeak-ng's own M/B/P and open-vowel timing).

    python benchmarks/lite_lipsync.py [--modes speech text] [--framing head|full] [--corpus held-out|tuning]
                                      [--rates 160]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lipsync.corpus import HELD_OUT, OTHER_LANGUAGES, TUNING, Corpus
from lipsync.evaluate import evaluate, evaluate_other_language
from lipsync.measure import MouthMeter
from lipsync.portraits import write_portrait
from lipsync.score import Tally


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=["speech", "text"], default=["speech", "text"])
    parser.add_argument("--framing", choices=["head", "full"], default="head")
    parser.add_argument("--corpus", choices=["held-out", "tuning"], default="held-out")
    parser.add_argument("--rates", type=int, nargs="+", help="words per minute (default: the corpus's)")
    parser.add_argument("--no-other-languages", action="store_true")
    args = parser.parse_args()
    corpus = HELD_OUT if args.corpus == "held-out" else TUNING
    if args.rates:
        corpus = Corpus(corpus.sentences, corpus.voices, tuple(args.rates))
    meter = MouthMeter()
    print(
        f"lite lip sync, {args.corpus} corpus: {len(corpus.sentences)} sentences in one clip per voice and rate "
        f"{corpus.rates} wpm, portrait framing {args.framing}, 480x480 H.264, detector mediapipe attention mesh"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        image = write_portrait(work / "portrait.png", args.framing)
        for mode in args.modes:
            started = time.perf_counter()
            per_voice: dict[str, tuple[Tally, Tally]] = defaultdict(lambda: (Tally(), Tally()))
            unaligned = []
            for clip in evaluate(corpus, image, work, with_transcript=mode == "text", meter=meter):
                if not clip.aligned_ok:
                    unaligned.append(f"{clip.voice.label} at {clip.rate} wpm")
                aligned, espeak = per_voice[clip.voice.label]
                aligned.add(clip.aligned)
                espeak.add(clip.espeak)
            print(
                f"\n{'speech alone' if mode == 'speech' else 'with transcript'} ({time.perf_counter() - started:.0f} s)"
            )
            header = (
                f"{'voice':<20} {'closed aligned':>14} {'closed espeak':>13} {'open aligned':>12} "
                f"{'open espeak':>11} {'T/D/N/K/G closed':>16} {'M/B/P':>5} {'open':>4}"
            )
            print(header)
            print("-" * len(header))
            total_a, total_e = Tally(), Tally()
            for label, (aligned, espeak) in per_voice.items():
                total_a.add(aligned)
                total_e.add(espeak)
                print(_row(label, aligned, espeak))
            print(_row("all", total_a, total_e))
            if unaligned:
                print(f"pocketsphinx could not align (scored against espeak-ng only): {', '.join(unaligned)}")
        if not args.no_other_languages:
            print("\nspeech alone, other languages (ground truth: espeak-ng's phoneme timing)")
            header = f"{'voice':<20} {'closed':>7} {'open':>7} {'M/B/P':>5} {'open':>4} {'r(aperture, loudness)':>22}"
            print(header)
            print("-" * len(header))
            for result in evaluate_other_language(OTHER_LANGUAGES, image, work, meter):
                t = result.espeak
                print(
                    f"{result.voice.label:<20} {_pct(t.closed):>7} {_pct(t.opened):>7} {t.closed_total:>5} "
                    f"{t.open_total:>4} {result.loudness_correlation:>22.2f}"
                )


def _row(label: str, aligned: Tally, espeak: Tally) -> str:
    return (
        f"{label:<20} {_pct(aligned.closed):>14} {_pct(espeak.closed):>13} {_pct(aligned.opened):>12} "
        f"{_pct(espeak.opened):>11} {_pct(aligned.non_labial):>16} {aligned.closed_total:>5} {aligned.open_total:>4}"
    )


if __name__ == "__main__":
    main()
