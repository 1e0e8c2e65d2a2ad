"""Progress reporting format shared by the runner (writer) and the operator (reader).

When stdout is not a terminal the runner prints one JSON object per line:
    {"event": "progress", "stage": "generate", "percent": 42.0}
and, for an engine that checkpoints its windows (docs/runner.md, Resuming), also
    "windowsDone": 3, "windowsTotal": 10, "resumedFromFrame": 162
The operator reads the last such line from the pod's log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """The render's stages, in order (the operator's status.progress.stage)."""

    DOWNLOAD = "download"
    LOAD = "load"
    FEATURES = "features"
    GENERATE = "generate"
    UPLOAD = "upload"
    DONE = "done"


@dataclass(frozen=True)
class Windows:
    """Checkpointed windows of a render, and the frame this attempt started from."""

    done: int
    total: int
    resumed_from_frame: int

    def wire(self) -> dict[str, int]:
        return {"windowsDone": self.done, "windowsTotal": self.total, "resumedFromFrame": self.resumed_from_frame}


@dataclass(frozen=True)
class Reading:
    stage: Stage
    percent: float
    windows: Windows | None = None


def progress_line(stage: str, percent: float, windows: Windows | None = None) -> str:
    line = {"event": "progress", "stage": stage, "percent": round(percent, 1), **(windows.wire() if windows else {})}
    return json.dumps(line, separators=(",", ":"))


def _windows(data: dict[str, object]) -> Windows | None:
    done, total, frame = data.get("windowsDone"), data.get("windowsTotal"), data.get("resumedFromFrame")
    if not (isinstance(done, int) and isinstance(total, int) and isinstance(frame, int)):
        return None
    if any(isinstance(v, bool) for v in (done, total, frame)) or not (0 <= done <= total and frame >= 0):
        return None
    return Windows(done, total, frame)


def parse_progress(log_tail: str) -> Reading | None:
    """The last progress line in a log excerpt, or None."""
    for line in reversed(log_tail.splitlines()):
        line = line.strip()
        if not line.startswith("{") or '"progress"' not in line:
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if data.get("event") == "progress" and data.get("stage") in Stage.__members__.values():
            try:
                return Reading(Stage(data["stage"]), float(data.get("percent", 0.0)), _windows(data))
            except (TypeError, ValueError):
                continue
    return None
