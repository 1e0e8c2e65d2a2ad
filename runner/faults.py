"""Crash points for the resume tests: MULTITALK_FAULT=<point>:<n> SIGKILLs the runner there.

A SIGKILL runs no handler and no clean-up, as a node's loss or the OOM killer would; the
points are the moments a resume must survive that a test cannot hit reliably from outside
(between a checkpoint's data and its manifest, inside the final assembly). Unset, it costs
one dictionary look-up per window.
"""

from __future__ import annotations

import os
import signal
from enum import StrEnum

FAULT_ENV = "MULTITALK_FAULT"


class FaultPoint(StrEnum):
    CHECKPOINT_DATA = "checkpoint-data"  # window n's data is written, its manifest is not
    ASSEMBLY = "assembly"  # every frame is with the encoder, the MP4 is not finished (n is ignored)


def crash_point(point: FaultPoint, n: int = 0) -> None:
    """SIGKILL this process when MULTITALK_FAULT names this point (and n, where it matters)."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, index = wanted.partition(":")
    if name == point and (point is FaultPoint.ASSEMBLY or index == str(n)):
        os.kill(os.getpid(), signal.SIGKILL)
