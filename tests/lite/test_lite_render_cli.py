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


def test_bbox_in_image_pixels_picks_the_face_through_the_runner(tmp_path: Path) -> None:
    """A speaker's bbox is in pixels of the uploaded image; the runner maps it onto the fitted frame."""
    photo = data.astronaut()  # 512x512, face at about rows 70-175, columns 180-272
    pair = np.concatenate([photo, photo[:, ::-1]], axis=1)  # 1024x512, second face at columns 751-843
    Image.fromarray(pair).save(tmp_path / "pair.png")
    request = {
        "engine": "lite",
        "image": str(tmp_path / "pair.png"),
        "speakers": [
            {"audio": str(MEDIA / "hello.wav"), "bbox": [50, 730, 200, 860]},  # the right-hand person
            {"audio": str(MEDIA / "hello.wav")},
        ],
        "audioMode": "sequential",
        "video": {"width": 800, "height": 400, "fps": 25},
        "lite": {"headMotion": 0, "blinksPerMinute": 0},
        "output": {"uri": str(tmp_path / "out" / "pair.mp4")},
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    proc = subprocess.run(
        [str(CLI), "render", "--request", str(tmp_path / "request.json"), "--result", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with av.open(str(tmp_path / "out" / "pair.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.int16)
    first_turn = frames[: len(frames) // 2]
    motion = np.abs(first_turn - first_turn[0]).mean(axis=(0, 3))  # per pixel, over the first turn
    # Around each mouth in the 800x400 frame (scale 0.78): rows ~100-135, columns ~140-215 / ~585-660.
    left, right = motion[100:135, 140:215].mean(), motion[100:135, 585:660].mean()
    assert right > 4 * left  # speaker 1 (bbox on the right person) talks first; left is H.264 noise
