"""Progress reporting format shared by the runner (writer) and the operator (reader).

When stdout is not a terminal the runner prints one JSON object per line:
    {"event": "progress", "stage": "generate", "percent": 42.0}
The operator reads the last such line from the pod's log.
"""

from __future__ import annotations

import json
from enum import StrEnum


class Stage(StrEnum):
    """The render's stages, in order (the operator's status.progress.stage)."""

    DOWNLOAD = "download"
    LOAD = "load"
    FEATURES = "features"
    GENERATE = "generate"
    UPLOAD = "upload"
    DONE = "done"


def progress_line(stage: str, percent: float) -> str:
    return json.dumps({"event": "progress", "stage": stage, "percent": round(percent, 1)}, separators=(",", ":"))


def parse_progress(log_tail: str) -> tuple[Stage, float] | None:
    """(stage, percent) of the last progress line in a log excerpt, or None."""
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
                return Stage(data["stage"]), float(data.get("percent", 0.0))
            except (TypeError, ValueError):
                continue
    return None
