"""One clip per voice and rate (all the corpus's sentences in one go), rendered and scored
against both ground truths."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipsync.corpus import Corpus, Voice
from lipsync.espeak import Espeak
from lipsync.measure import PAD_SECONDS, MouthMeter, render, write_wav
from lipsync.score import Tally, score
from lipsync.truth import forced_alignment, from_espeak
from multitalk.runner.engines.base import ENGINE_SAMPLE_RATE
from multitalk.runner.engines.lite.features import frame_features


@dataclass(frozen=True)
class ClipScore:
    voice: Voice
    rate: int
    seconds: float
    aligned: Tally  # against pocketsphinx forced alignment of the text (empty if it failed)
    espeak: Tally  # against espeak-ng's own phoneme timing
    aligned_ok: bool


@dataclass(frozen=True)
class OtherLanguageScore:
    voice: Voice
    espeak: Tally
    loudness_correlation: float  # measured aperture vs the speech's loudness, while speaking


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
            truth = forced_alignment(audio, text)
            yield ClipScore(
                voice,
                rate,
                len(audio) / ENGINE_SAMPLE_RATE,
                score(measured.aperture, truth, measured.fps),
                score(measured.aperture, from_espeak(utterance.phonemes, PAD_SECONDS), measured.fps),
                bool(truth),
            )


def evaluate_other_language(
    sentences: tuple[tuple[Voice, str], ...], image: Path, workdir: Path, meter: MouthMeter, rate: int = 150
) -> Iterator[OtherLanguageScore]:
    """Speech alone (no transcript: the aligner is English), against espeak-ng's timing."""
    for voice, text in sentences:
        utterance = Espeak.shared().say(text, voice.name, rate)
        wav = workdir / f"{voice.name.replace('+', '_')}-other.wav"
        audio = write_wav(utterance, wav)
        video = wav.with_suffix(".mp4")
        render(wav, image, video, None)
        measured = meter.measure(video)
        frames = len(measured.aperture)
        loud = frame_features(audio, ENGINE_SAMPLE_RATE, measured.fps, frames).loudness
        speaking = (loud > 0.15) & ~np.isnan(measured.aperture)
        corr = float(np.corrcoef(measured.aperture[speaking], loud[speaking])[0, 1])
        yield OtherLanguageScore(
            voice,
            score(measured.aperture, from_espeak(utterance.phonemes, PAD_SECONDS, english=False), measured.fps),
            corr,
        )
