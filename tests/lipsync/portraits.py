"""Portraits the accuracy is measured on (skimage's astronaut: Eileen Collins, NASA, public domain)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

# Head and shoulders, the usual talking-head framing: the face is about 43 % of the frame's
# height (206 px at 480x480). The whole photo (the demo's framing) leaves the face 97 px tall,
# where the detector's own scatter on a shut mouth (about 2 px) is as large as the lip gap.
HEAD_AND_SHOULDERS = (slice(10, 250), slice(105, 345))


def write_portrait(path: Path, framing: str = "head") -> Path:
    """framing: "head" (head and shoulders) or "full" (the whole photo)."""
    image = data.astronaut()
    if framing == "head":
        image = image[HEAD_AND_SHOULDERS]
    elif framing != "full":
        raise ValueError(f"framing is head or full, not {framing!r}")
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    return path
