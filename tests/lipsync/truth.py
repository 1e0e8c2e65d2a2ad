"""Ground-truth phone timing for speech with known words, from two independent sources.

- pocketsphinx forced alignment of the known text (the measurement the issue names). When the
  engine is given a transcript it aligns with the same pocketsphinx family, so this truth can
  share the engine's boundary errors: it flatters the transcript mode.
- espeak-ng's own phoneme events (the synthesiser knows where it put each phoneme), mapped
  onto ARPAbet. No recogniser is involved, so it keeps the first one honest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pocketsphinx import Decoder

from lipsync.espeak import EspeakPhoneme

SAMPLE_RATE = 16_000

CLOSED = frozenset({"M", "B", "P"})
OPEN = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})
OPEN_MIN_SECONDS = 0.06
# Reported, not scored: how often the lips also shut on alveolar and velar stops and nasals.
NON_LABIAL = frozenset({"T", "D", "N", "K", "G", "NG"})

# espeak-ng English phoneme mnemonics -> ARPAbet, for the phones scored here (the rest is "other").
ESPEAK_TO_ARPABET = {
    "m": "M", "b": "B", "p": "P",
    "A:": "AA", "A@": "AA", "0": "AA", "O2": "AA",
    "a": "AE", "aa": "AE",
    "V": "AH", "@": "AH", "@2": "AH", "@5": "AH", "a#": "AH",
    "O:": "AO", "O@": "AO", "O": "AO",
    "aU": "AW",
    "aI": "AY", "aI@": "AY", "aI3": "AY",
    "t": "T", "d": "D", "n": "N", "k": "K", "g": "G", "N": "NG",
}  # fmt: skip


# Other languages' espeak-ng mnemonics: lips shut on m b p (Spanish "B" is a fricative, lips
# only approach), open on the a-vowels.
OTHER_LANGUAGE_TO_ARPABET = {
    "m": "M", "b": "B", "p": "P",
    "a": "AA", "a:": "AA", "A": "AA", "A:": "AA", "A~": "AA", "a#": "AA", "aI": "AY", "aU": "AW",
}  # fmt: skip


@dataclass(frozen=True)
class TruePhone:
    label: str  # ARPAbet ("M", "AA", ...) or "other"
    start: float  # seconds on the clip's timeline
    end: float


def from_espeak(phonemes: list[EspeakPhoneme], offset: float, english: bool = True) -> list[TruePhone]:
    table = ESPEAK_TO_ARPABET if english else OTHER_LANGUAGE_TO_ARPABET
    return [TruePhone(table.get(p.name, "other"), p.start + offset, p.end + offset) for p in phonemes]


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)*", text.lower())


# Default beams first; much wider ones when those lose the path (fast speech, long clips).
_BEAMS: tuple[dict[str, float], ...] = ({}, {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60})


def forced_alignment(audio: npt.NDArray[np.float32], text: str) -> list[TruePhone]:
    """pocketsphinx's forced alignment (10 ms frames) of text to 16 kHz audio; [] when it fails
    (it loses the path on one held-out clip, en-gb male at 200 wpm, whatever the beams)."""
    dither = np.random.default_rng(1).normal(0.0, 3e-4, audio.shape)  # exact zeros break the MFCCs
    pcm = (np.clip(audio + dither, -1, 1) * 32767).astype(np.int16).tobytes()
    for beams in _BEAMS:
        phones = _align(pcm, text, beams)
        if phones:
            return phones
    return []


def _align(pcm: bytes, text: str, beams: dict[str, float]) -> list[TruePhone]:
    dec = Decoder(lm=None, samprate=SAMPLE_RATE, loglevel="FATAL", **beams)
    dec.set_align_text(" ".join(words_of(text)))
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    if dec.hyp() is None:
        return []
    try:  # the phone-level pass can lose the path where the word-level one did not
        dec.set_alignment()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
    except RuntimeError:
        return []
    alignment = dec.get_alignment()
    if alignment is None:
        return []
    return [TruePhone(ph.name, ph.start / 100, (ph.start + ph.duration) / 100) for ph in alignment.phones()]
