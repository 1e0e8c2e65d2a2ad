"""Speech to timed English phones with pocketsphinx (acoustic model and phone LM ship in its wheel).

With a transcript, forced alignment gives accurate phone boundaries; without one (or when a
word is missing from the dictionary, or alignment fails) the phone-loop decoder guesses
phones directly. Either way the result only shapes the mouth: the energy features in
`features.py` keep any language moving plausibly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
_FRAME_SECONDS = 0.01  # pocketsphinx frame rate is 100 per second
_CHUNK_SECONDS = 20.0  # phone decoding runs on pieces cut at quiet points (bounded memory, no drift)


@dataclass(frozen=True)
class Phone:
    """An ARPAbet phone (e.g. "AA", "M", "SIL") and where it lies in the audio, in seconds."""

    label: str
    start: float
    end: float


@dataclass(frozen=True)
class PhoneResult:
    phones: list[Phone]
    method: str  # "aligned" | "decoded" | "silent"
    note: str = ""


def _pcm(audio: npt.NDArray[np.float32]) -> bytes:
    # A whisper of deterministic noise: digital silence (exact zeros) breaks the MFCC front end.
    noise = np.random.default_rng(0).normal(0.0, 3e-4, audio.shape).astype(np.float32)
    return (np.clip(audio + noise, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


def normalise_transcript(text: str) -> list[str]:
    """Lowercase words, punctuation dropped (keeps in-word apostrophes: "don't")."""
    return re.findall(r"[a-z]+(?:'[a-z]+)*", text.lower().replace("’", "'"))


_QUIET: dict[str, Any] = {"samprate": SAMPLE_RATE, "loglevel": "FATAL"}


class PhoneRecognizer:
    """Holds the two pocketsphinx decoders (about 0.1 s each to build); the aligner is built on
    first use, since only speakers with a transcript need it (a cold start saved)."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder, get_model_path

        self._aligner_instance: Any = None
        self._looper: Any = Decoder(
            # ds/topn halve the acoustic scoring (0.02 x real time on one core) with the same phones
            # where it matters (closures, open vowels).
            allphone=get_model_path("en-us/en-us-phone.lm.bin"),
            lw=2.0,
            beam=1e-10,
            pbeam=1e-10,
            ds=2,
            topn=2,
            **_QUIET,
        )

    @property
    def _aligner(self) -> Any:
        if self._aligner_instance is None:
            from pocketsphinx import Decoder

            self._aligner_instance = Decoder(lm=None, **_QUIET)
        return self._aligner_instance

    def missing_words(self, words: list[str]) -> list[str]:
        return [w for w in words if self._aligner.lookup_word(w) is None]

    def recognise(self, audio: npt.NDArray[np.float32], transcript: str | None) -> PhoneResult:
        if audio.size == 0 or float(np.max(np.abs(audio))) < 1e-4:
            return PhoneResult([], "silent")
        note = ""
        if transcript and transcript.strip():
            words = normalise_transcript(transcript)
            missing = self.missing_words(words)
            if not words:
                note = "transcript has no words; decoded phones instead"
            elif missing:
                note = f"transcript words not in the dictionary ({', '.join(missing[:5])}); decoded phones instead"
            else:
                phones = self.align(audio, words)
                if phones:
                    return PhoneResult(phones, "aligned")
                note = "transcript did not align with the speech; decoded phones instead"
        return PhoneResult(self.decode(audio), "decoded", note)

    def align(self, audio: npt.NDArray[np.float32], words: list[str]) -> list[Phone]:
        """Forced alignment of a known word sequence; [] when it fails."""
        pcm = _pcm(audio)
        dec = self._aligner
        try:
            dec.set_align_text(" ".join(words))
            dec.start_utt()
            dec.process_raw(pcm, full_utt=True)
            dec.end_utt()
            if dec.hyp() is None:
                return []
            dec.set_alignment()
            dec.start_utt()
            dec.process_raw(pcm, full_utt=True)
            dec.end_utt()
            alignment = dec.get_alignment()
        except RuntimeError:
            return []
        if alignment is None:
            return []
        return [
            Phone(ph.name, ph.start * _FRAME_SECONDS, (ph.start + ph.duration) * _FRAME_SECONDS)
            for ph in alignment.phones()
        ]

    def decode(self, audio: npt.NDArray[np.float32]) -> list[Phone]:
        """Phone-loop decoding, piece by piece."""
        phones: list[Phone] = []
        for start, stop in quiet_cuts(audio, SAMPLE_RATE, _CHUNK_SECONDS):
            offset = start / SAMPLE_RATE
            dec = self._looper
            dec.start_utt()
            dec.process_raw(_pcm(audio[start:stop]), full_utt=True)
            dec.end_utt()
            for seg in dec.seg() or ():
                start_s = offset + seg.start_frame * _FRAME_SECONDS
                phones.append(Phone(seg.word, start_s, offset + (seg.end_frame + 1) * _FRAME_SECONDS))
        return phones


def quiet_cuts(audio: npt.NDArray[np.float32], rate: int, piece_seconds: float) -> list[tuple[int, int]]:
    """Split into pieces of about piece_seconds, each cut at the quietest 10 ms in the last quarter."""
    piece = int(piece_seconds * rate)
    hop = rate // 100
    cuts, start = [], 0
    while len(audio) - start > piece:
        lo, hi = start + piece * 3 // 4, start + piece
        window = audio[lo:hi]
        frames = window[: len(window) // hop * hop].reshape(-1, hop)
        cut = lo + int(np.argmin((frames * frames).sum(axis=1))) * hop + hop // 2
        cuts.append((start, cut))
        start = cut
    cuts.append((start, len(audio)))
    return cuts
