"""Render the example with the lite engine and save the docs' poster and 8-frame contact sheet.

    python examples/lite_contact_sheet.py   # writes docs/images/lite-poster.png and lite-contact-sheet.png

Runs the real CLI (`multitalk-runner render --engine lite`) on examples/media, then reads
the MP4 back: the poster is the runner's own poster frame; the sheet shows 8 evenly spaced
frames cut to the head, each labelled with its time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from multitalk.runner.engines.lite.landmarks import FaceFinder

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "examples" / "media"
IMAGES = ROOT / "docs" / "images"


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "hello.mp4"
        cli = Path(sys.executable).with_name("multitalk-runner")
        subprocess.run(
            [str(cli), "render", "--engine", "lite", "--audio", str(MEDIA / "hello.wav"),
             "--image", str(MEDIA / "portrait.jpg"), "--out", str(video), "--result", str(Path(tmp) / "r.json")],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        shutil.copyfile(video.with_suffix(".png"), IMAGES / "lite-poster.png")
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 25)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]

    finder = FaceFinder()
    face = finder.mesh(frames[0])[0]
    finder.close()
    top, left, bottom, right = face.box
    side = 1.9 * (bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2 + 0.05 * side
    y0, x0 = max(0, round(cy - side / 2)), max(0, round(cx - side / 2))
    y1, x1 = min(frames[0].shape[0], y0 + round(side)), min(frames[0].shape[1], x0 + round(side))

    picks = np.linspace(0.08, 0.92, 8) * (len(frames) - 1)
    tiles = []
    for index in picks.round().astype(int):
        tile = Image.fromarray(frames[index][y0:y1, x0:x1]).resize((240, 240), Image.Resampling.LANCZOS)
        ImageDraw.Draw(tile).text((6, 4), f"{index / fps:.2f} s", fill=(255, 255, 255))
        tiles.append(tile)
    sheet = Image.new("RGB", (4 * 240 + 3 * 4, 2 * 240 + 4), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % 4) * 244, (i // 4) * 244))
    sheet.save(IMAGES / "lite-contact-sheet.png", optimize=True)
    print(f"wrote {IMAGES / 'lite-poster.png'} and {IMAGES / 'lite-contact-sheet.png'}")


if __name__ == "__main__":
    main()
