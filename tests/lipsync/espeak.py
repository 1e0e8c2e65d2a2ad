"""espeak-ng speech with the synthesiser's own phoneme timing (libespeak-ng through ctypes).

The command line cannot say where each phoneme lies in the audio (`--pho` is for mbrola
voices only, `-x`/`-X` print phonemes without times), but the library reports a phoneme event
with its audio position for every phoneme it synthesises (espeakINITIALIZE_PHONEME_EVENTS).
That timing is ground truth by construction, independent of any recogniser.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# espeak-ng's speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_PARAM_RATE = 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class EspeakPhoneme:
    name: str  # espeak-ng's phoneme mnemonic ("m", "aI", "A:", "_:" for a pause)
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class Utterance:
    audio: npt.NDArray[np.int16]
    rate: int
    phonemes: list[EspeakPhoneme]


class Espeak:
    """One libespeak-ng instance (the library is a process-wide singleton: calls are serialised)."""

    _lock = threading.Lock()
    _instance: Espeak | None = None

    def __init__(self) -> None:
        try:
            self._lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError as exc:
            raise RuntimeError("libespeak-ng is required (Debian package libespeak-ng1, pulled by espeak-ng)") from exc
        self._rate = int(self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS))
        if self._rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._samples: list[npt.NDArray[np.int16]] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._collect)  # kept alive: the library holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def shared(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = Espeak()
            return cls._instance

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: ctypes._Pointer[_Event]) -> int:
        if wav and count > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                self._events.append((event.audio_position, bytes(event.id.string).split(b"\0")[0].decode()))
            i += 1
        return 0

    def say(self, text: str, voice: str, words_per_minute: int) -> Utterance:
        with self._lock:
            self._samples, self._events = [], []
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self._lib.espeak_SetParameter(_PARAM_RATE, words_per_minute, 0)
            data = text.encode()
            self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            audio = np.concatenate(self._samples) if self._samples else np.zeros(0, np.int16)
            events = list(self._events)
        duration = len(audio) / self._rate
        phonemes = [
            EspeakPhoneme(name, ms / 1000, (events[i + 1][0] / 1000 if i + 1 < len(events) else duration))
            for i, (ms, name) in enumerate(events)
        ]
        return Utterance(audio, self._rate, [p for p in phonemes if p.end > p.start])
