"""Showing progress: a tqdm bar on a terminal, JSON lines (runner/progress.py) otherwise.

The percent is of the whole render: each stage owns a slice of 0..100, so the operator's
PROGRESS column moves steadily instead of restarting at 0 for every stage.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from multitalk.runner.progress import Stage, Windows, progress_line

# Slice of the overall percent owned by each stage: (start, end).
STAGE_SPAN: dict[str, tuple[float, float]] = {
    Stage.DOWNLOAD: (0.0, 5.0),
    Stage.LOAD: (5.0, 10.0),
    Stage.FEATURES: (10.0, 15.0),
    Stage.GENERATE: (15.0, 95.0),
    Stage.UPLOAD: (95.0, 100.0),
    Stage.DONE: (100.0, 100.0),
}


def overall_percent(stage: str, fraction: float) -> float:
    start, end = STAGE_SPAN.get(stage, (0.0, 100.0))
    return start + (end - start) * min(max(fraction, 0.0), 1.0)


class ProgressReporter:
    """Call update(stage, fraction) as often as you like; output is throttled to whole percents."""

    def __init__(self, stream: IO[str] | None = None, tty: bool | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.enabled = enabled
        self._last: tuple[str, int] | None = None
        self._bar: Any = None
        self._windows: Windows | None = None
        self._percent = (Stage.DOWNLOAD.value, 0.0)

    def windows(self, windows: Windows) -> None:
        """Windows checkpointed so far: carried on every progress line from now on, and one now."""
        self._windows = windows
        self._last = None
        self.update(*self._percent)

    def update(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        self._percent = (stage, fraction)
        percent = overall_percent(stage, fraction)
        key = (stage, int(percent))
        if key == self._last:
            return
        self._last = key
        if self.tty:
            self._tqdm(stage, percent)
        else:
            self.stream.write(progress_line(stage, percent, self._windows) + "\n")
            self.stream.flush()

    def _tqdm(self, stage: str, percent: float) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=100, unit="%", file=self.stream, bar_format="{desc:>9} {percentage:3.0f}%|{bar}|")
        self._bar.set_description_str(stage)
        self._bar.n = percent
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
