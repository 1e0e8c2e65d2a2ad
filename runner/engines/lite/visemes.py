"""Mouth shapes (visemes) for ARPAbet phones and for letters (wav2vec2 CTC vocabularies).

A shape is five numbers, each 0..1: jaw opening beyond the reference pose, lip spreading
(wide), lip rounding, lower lip tucked under the upper teeth (F/V), and lips pressed shut
(M/B/P; only matters when the reference photo shows parted lips). All zero is the mouth as
it is in the photo. The grouping follows the usual 2D lip-sync sets
(Preston Blair / Rhubarb): closed for M/B/P, open for AA/AE/AH, rounded for OW/UW, lip to
teeth for F/V. Dominance says how strongly a phone pulls the mouth to its shape against its
neighbours (co-articulation): lip closures and lip-teeth contacts must be reached, a T or K
barely shows and borrows its shape from the vowels around it.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPE_FIELDS = ("open", "wide", "round", "tuck", "closed")
BILABIAL = frozenset({"M", "B", "P"})  # phones whose lips must meet


@dataclass(frozen=True)
class Viseme:
    name: str
    shape: tuple[float, float, float, float, float]  # open, wide, round, tuck, closed
    dominance: float


REST = Viseme("rest", (0.0, 0.0, 0.0, 0.0, 0.0), 0.6)
_CLOSED = Viseme("MBP", (0.0, 0.0, 0.05, 0.0, 1.0), 6.0)
_LIP_TEETH = Viseme("FV", (0.08, 0.1, 0.0, 1.0, 0.0), 3.0)
_OPEN = Viseme("AI", (1.0, 0.25, 0.0, 0.0, 0.0), 1.2)
_MID_OPEN = Viseme("AH", (0.75, 0.15, 0.1, 0.0, 0.0), 1.1)
_SPREAD = Viseme("E", (0.45, 0.8, 0.0, 0.0, 0.0), 1.0)
_NARROW = Viseme("EE", (0.25, 1.0, 0.0, 0.0, 0.0), 1.0)
_ROUND_OPEN = Viseme("O", (0.6, 0.0, 0.8, 0.0, 0.0), 1.2)
_ROUND = Viseme("U", (0.25, 0.0, 1.0, 0.0, 0.0), 1.4)
_TEETH = Viseme("SZ", (0.18, 0.55, 0.0, 0.0, 0.0), 0.9)
_POSTALVEOLAR = Viseme("SH", (0.22, 0.1, 0.6, 0.0, 0.0), 1.0)
_TONGUE = Viseme("L", (0.3, 0.2, 0.0, 0.0, 0.0), 0.5)
_THETA = Viseme("TH", (0.22, 0.3, 0.0, 0.0, 0.0), 0.8)
_LIGHT = Viseme("etc", (0.25, 0.15, 0.0, 0.0, 0.0), 0.35)  # T D N K G NG HH Y: shape borrowed from neighbours
_R = Viseme("R", (0.25, 0.0, 0.5, 0.0, 0.0), 0.8)

PHONE_VISEMES: dict[str, Viseme] = {
    "SIL": REST,
    "M": _CLOSED, "B": _CLOSED, "P": _CLOSED,
    "F": _LIP_TEETH, "V": _LIP_TEETH,
    "AA": _OPEN, "AE": _OPEN, "AY": _OPEN, "AW": _OPEN,
    "AH": _MID_OPEN, "ER": _R,
    "EH": _SPREAD, "EY": _SPREAD, "IH": _SPREAD,
    "IY": _NARROW, "Y": _NARROW,
    "AO": _ROUND_OPEN, "OW": _ROUND_OPEN, "OY": _ROUND_OPEN,
    "UW": _ROUND, "UH": _ROUND, "W": _ROUND,
    "S": _TEETH, "Z": _TEETH,
    "SH": _POSTALVEOLAR, "ZH": _POSTALVEOLAR, "CH": _POSTALVEOLAR, "JH": _POSTALVEOLAR,
    "L": _TONGUE, "TH": _THETA, "DH": _THETA, "R": _R,
    "T": _LIGHT, "D": _LIGHT, "N": _LIGHT, "K": _LIGHT, "G": _LIGHT, "NG": _LIGHT, "HH": _LIGHT,
}  # fmt: skip

# Letters of English CTC vocabularies (wav2vec2-base-960h): the most likely sound of each letter.
LETTER_VISEMES: dict[str, Viseme] = {
    "A": _OPEN, "E": _SPREAD, "I": _SPREAD, "O": _ROUND_OPEN, "U": _ROUND, "Y": _NARROW,
    "M": _CLOSED, "B": _CLOSED, "P": _CLOSED, "F": _LIP_TEETH, "V": _LIP_TEETH,
    "W": _ROUND, "Q": _ROUND, "R": _R, "L": _TONGUE, "S": _TEETH, "Z": _TEETH, "C": _TEETH, "X": _TEETH,
    "J": _POSTALVEOLAR, "H": _LIGHT, "T": _LIGHT, "D": _LIGHT, "N": _LIGHT, "K": _LIGHT, "G": _LIGHT,
    "|": REST, "'": _LIGHT,
}  # fmt: skip


def phone_viseme(label: str) -> Viseme:
    """Viseme of a pocketsphinx phone; noise and filler units (+NSN+, +SPN+, ...) are rest."""
    return PHONE_VISEMES.get(label.upper().rstrip("012"), REST)


def letter_viseme(letter: str) -> Viseme | None:
    """Viseme of a CTC token; None for blank/pad/special tokens (they carry no shape)."""
    return LETTER_VISEMES.get(letter.upper())
