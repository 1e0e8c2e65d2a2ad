"""The lite engine imports only mediapipe's face modules (no matplotlib: a second of cold start),
and a later `import mediapipe` in the same process still gets everything it asks for."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from multitalk.runner.engines.lite.landmarks import FaceFinder

finder = FaceFinder()
assert "matplotlib" not in sys.modules, "matplotlib was imported"
import mediapipe as mp

assert mp.__version__ == "0.10.21", mp.__version__
assert mp.solutions.face_mesh.FaceMesh is not None
assert mp.Image is not None and mp.ImageFormat.SRGB is not None
assert callable(mp.solutions.drawing_utils.draw_landmarks)  # imported on first use
assert "matplotlib" in sys.modules
assert mp.tasks.vision.FaceLandmarker is not None
try:
    mp.no_such_thing
except AttributeError:
    pass
else:
    raise AssertionError("unknown attribute did not raise AttributeError")
finder.close()
print("ok")
"""


def test_face_mesh_without_the_rest_of_mediapipe() -> None:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("ok")
