"""Scores of one clip: did the mouth close on each M/B/P and open on each open vowel?

Aperture is normalised per clip to its 5th-95th percentile range. A closure counts when the
smallest aperture within the phone, plus or minus one frame, is at most 30 % of the range
(above the 5th percentile); an open vowel (60 ms or longer) counts when the largest aperture
there reaches 50 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lipsync.truth import CLOSED, NON_LABIAL, OPEN, OPEN_MIN_SECONDS, TruePhone

CLOSED_AT_MOST = 0.30
OPEN_AT_LEAST = 0.50


@dataclass
class Tally:
    closed_hits: int = 0
    closed_total: int = 0
    open_hits: int = 0
    open_total: int = 0
    non_labial_closed: int = 0  # T D N K G NG that also show a closed mouth (reported only)
    non_labial_total: int = 0
    misses: list[str] = field(default_factory=list)  # "M@1.23s:0.41" for reports

    def add(self, other: Tally) -> None:
        self.closed_hits += other.closed_hits
        self.closed_total += other.closed_total
        self.open_hits += other.open_hits
        self.open_total += other.open_total
        self.non_labial_closed += other.non_labial_closed
        self.non_labial_total += other.non_labial_total
        self.misses.extend(other.misses)

    @property
    def closed(self) -> float:
        return self.closed_hits / max(self.closed_total, 1)

    @property
    def opened(self) -> float:
        return self.open_hits / max(self.open_total, 1)

    @property
    def non_labial(self) -> float:
        return self.non_labial_closed / max(self.non_labial_total, 1)


def normalised(aperture: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Aperture mapped so the clip's 5th percentile is 0 and its 95th is 1 (missing frames: NaN)."""
    lo, hi = np.nanpercentile(aperture, [5, 95])
    return (aperture - lo) / max(hi - lo, 1e-9)


def window(phone: TruePhone, fps: float, frames: int) -> slice:
    """Frames whose centre lies in the phone, plus one frame either side (at least the nearest frame)."""
    first = int(np.ceil(phone.start * fps - 0.5))
    last = int(np.floor(phone.end * fps - 0.5))
    if last < first:  # shorter than a frame: the frame nearest its middle
        first = last = int(np.floor((phone.start + phone.end) / 2 * fps))
    return slice(max(first - 1, 0), min(last + 2, frames))


def score(aperture: npt.NDArray[np.float64], phones: list[TruePhone], fps: float) -> Tally:
    level = normalised(aperture)
    tally = Tally()
    for phone in phones:
        span = level[window(phone, fps, len(level))]
        if span.size == 0 or np.all(np.isnan(span)):
            continue
        if phone.label in CLOSED:
            value = float(np.nanmin(span))
            tally.closed_total += 1
            hit = value <= CLOSED_AT_MOST
            tally.closed_hits += hit
        elif phone.label in NON_LABIAL:
            tally.non_labial_total += 1
            tally.non_labial_closed += float(np.nanmin(span)) <= CLOSED_AT_MOST
            continue
        elif phone.label in OPEN and phone.end - phone.start >= OPEN_MIN_SECONDS:
            value = float(np.nanmax(span))
            tally.open_total += 1
            hit = value >= OPEN_AT_LEAST
            tally.open_hits += hit
        else:
            continue
        if not hit:
            tally.misses.append(f"{phone.label}@{phone.start:.2f}s:{value:.2f}")
    return tally
