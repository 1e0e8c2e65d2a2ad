"""One clip per voice and rate (all the corpus's sentences in one go), rendered and scored
against both ground truths."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lipsync.corpus import Corpus, Voice
from lipsync.espeak import Espeak
from lipsync.measure import PAD_SECONDS, MouthMeter, render, write_wav
from lipsync.score import Tally, score
from lipsync.truth import forced_alignment, from_espeak


@dataclass(frozen=True)
class ClipScore:
    voice: Voice
    rate: int
    seconds: float
    aligned: Tally  # against pocketsphinx forced alignment of the text
    espeak: Tally  # against espeak-ng's own phoneme timing


def evaluate(
    corpus: Corpus, image: Path, workdir: Path, with_transcript: bool, meter: MouthMeter | None = None
) -> Iterator[ClipScore]:
    meter = meter or MouthMeter()
    text = " ".join(corpus.sentences)
    for voice in corpus.voices:
        for rate in corpus.rates:
            utterance = Espeak.shared().say(text, voice.name, rate)
            stem = f"{voice.name.replace('+', '_')}-{rate}"
            wav = workdir / f"{stem}.wav"
            audio = write_wav(utterance, wav)
            video = workdir / f"{stem}-{'text' if with_transcript else 'speech'}.mp4"
            render(wav, image, video, text if with_transcript else None)
            measured = meter.measure(video)
            yield ClipScore(
                voice,
                rate,
                len(audio) / 16_000,
                score(measured.aperture, forced_alignment(audio, text), measured.fps),
                score(measured.aperture, from_espeak(utterance.phonemes, PAD_SECONDS), measured.fps),
            )
