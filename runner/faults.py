"""Faults for the resume tests, named by MULTITALK_FAULT=<point>:<n>.

Crash points SIGKILL the runner there. A SIGKILL runs no handler and no clean-up, as a
node's loss or the OOM killer would; the points are the moments a resume must survive that
a test cannot hit reliably from outside (between a checkpoint's data and its manifest,
inside the final assembly).

`slow-window:<seconds>` makes each window take that much longer, as a real engine's windows
do (minutes on a GPU). A placeholder window takes a tenth of a second, less than a
disruption takes to reach a loaded node's pod, so a cluster test's render could publish
before its pod was stopped. Unset, each costs one dictionary look-up per window.
"""

from __future__ import annotations

import os
import signal
import time
from enum import StrEnum

FAULT_ENV = "MULTITALK_FAULT"


class FaultPoint(StrEnum):
    CHECKPOINT_DATA = "checkpoint-data"  # window n's data is written, its manifest is not
    ASSEMBLY = "assembly"  # every frame is with the encoder, the MP4 is not finished (n is ignored)
    SLOW_WINDOW = "slow-window"  # not a crash: n seconds more per window


def _fault() -> tuple[str, str]:
    """(point, argument) that MULTITALK_FAULT names; empty strings when it is unset."""
    name, _, argument = os.environ.get(FAULT_ENV, "").partition(":")
    return name, argument


def crash_point(point: FaultPoint, n: int = 0) -> None:
    """SIGKILL this process when MULTITALK_FAULT names this point (and n, where it matters)."""
    name, index = _fault()
    if name == point and (point is FaultPoint.ASSEMBLY or index == str(n)):
        os.kill(os.getpid(), signal.SIGKILL)


def slow_window() -> None:
    """Sleep after a window when MULTITALK_FAULT=slow-window:<seconds> (a SIGTERM still ends it)."""
    name, seconds = _fault()
    if name == FaultPoint.SLOW_WINDOW:
        time.sleep(float(seconds))
