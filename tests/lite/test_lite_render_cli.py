"""End to end: `multitalk-runner render --engine lite` on the example media, the MP4 read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
from lite_helpers import fit
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[2]
MEDIA = ROOT / "examples" / "media"
CLI = Path(sys.executable).with_name("multitalk-runner")


def _render(tmp_path: Path, image: Path, *extra: str, engine: str = "lite") -> tuple[int, dict[str, Any]]:
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [str(CLI), "render", "--engine", engine, "--audio", str(MEDIA / "hello.wav"), "--image", str(image),
         "--out", str(tmp_path / "out" / "hello.mp4"), "--result", str(result), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.exists(), proc.stderr[-2000:]
    return proc.returncode, json.loads(result.read_text())


def test_lite_render_of_the_example(tmp_path: Path) -> None:
    code, result = _render(tmp_path, MEDIA / "portrait.jpg", "--width", "320", "--height", "320")
    assert code == 0, result
    engine = result["engine"]
    assert isinstance(engine, dict) and engine["name"] == "lite" and engine["device"] == "cpu"
    assert any(str(m).startswith("mediapipe-face-mesh") for m in engine["models"])
    with av.open(str(tmp_path / "out" / "hello.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    output = result["output"]
    assert isinstance(output, dict) and len(frames) == output["frames"]
    # The face moves (frames differ from each other) but the corners of the picture do not.
    stack = np.stack(frames).astype(np.int16)
    assert np.abs(stack - stack[0]).max(axis=(1, 2, 3)).max() > 40
    corner = stack[:, :40, :40]
    assert np.abs(corner - corner[0]).max() <= 6  # only H.264 noise


def test_no_face_exits_3_naming_the_image(tmp_path: Path) -> None:
    picture = tmp_path / "coffee.png"
    Image.fromarray(fit(data.coffee(), 480, 480)).save(picture)
    code, result = _render(tmp_path, picture)
    assert code == 3
    assert result["error"] == {"reason": "InvalidInput", "field": "image", "message": result["error"]["message"]}
    assert "no face found" in str(result["error"])
    assert not (tmp_path / "out" / "hello.mp4").exists()


def test_auto_falls_back_to_the_placeholder_and_says_why(tmp_path: Path) -> None:
    picture = tmp_path / "coffee.png"
    Image.fromarray(fit(data.coffee(), 480, 480)).save(picture)
    code, result = _render(tmp_path, picture, "--width", "160", "--height", "160", engine="auto")
    assert code == 0, result
    engine = result["engine"]
    assert engine["requested"] == "auto" and engine["name"] == "placeholder"
    assert "lite refused the input: image: no face found" in engine["fallbackReason"]
    assert (tmp_path / "out" / "hello.mp4").exists()
