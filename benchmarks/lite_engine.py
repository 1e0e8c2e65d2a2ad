"""Lite engine benchmark: whole renders through the runner's pipeline, side by side.

For 5 s, 30 s and 120 s of speech at 480x480 and 1280x720, 25 fps, each render runs in a
fresh process (so model loading and peak memory are its own) and goes through the same
path as `multitalk-runner render --engine lite`: decode, face analysis, phone timing,
frames, H.264/AAC encoding, poster and manifest. Prints the runner's stage timings, the
speed relative to real time (with and without the one-off model load) and peak RSS.

    python benchmarks/lite_engine.py [--durations 5 30 120] [--sizes 480x480 1280x720] [--dub]

--dub adds, after each portrait render, a dub of that render's video to the same speech
(sourceVideo instead of image: faces tracked on every frame), side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "examples" / "media" / "hello.wav"
PORTRAIT = ROOT / "examples" / "media" / "portrait.jpg"


def speech_of_length(seconds: float, path: Path) -> None:
    """The example speech repeated to the wanted length (same rate and format)."""
    with wave.open(str(SPEECH)) as src:
        params = src.getparams()
        pcm = np.frombuffer(src.readframes(src.getnframes()), dtype=np.int16).reshape(-1, src.getnchannels())
    samples = round(seconds * params.framerate)
    tiled = np.tile(pcm, (samples // len(pcm) + 1, 1))[:samples]
    with wave.open(str(path), "wb") as dst:
        dst.setnchannels(params.nchannels)
        dst.setsampwidth(params.sampwidth)
        dst.setframerate(params.framerate)
        dst.writeframes(tiled.tobytes())


def child(audio: str, width: int, height: int, out: str, inline: bool, source: str | None) -> None:
    """One render in this process; prints a JSON line with the timings."""
    start = time.perf_counter()
    from multitalk.runner.pipeline import Pipeline
    from multitalk.runner.request import RenderRequest

    picture = {"sourceVideo": source} if source else {"image": str(PORTRAIT)}
    request = RenderRequest.model_validate(
        {
            "engine": "lite",
            **picture,
            "speakers": [{"audio": audio}],
            "video": {"width": width, "height": height, "fps": 25, "maxDurationSeconds": 600},
            "output": {"uri": out, "overwrite": True},
        }
    )
    imported = time.perf_counter() - start
    model_dir = Path(tempfile.gettempdir()) / "no-model-cache"
    result = Pipeline(request, model_dir, background_encoding=not inline).run()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    timings = result.timings.wire() if result.timings else {}
    cpu = usage.ru_utime + usage.ru_stime
    print(
        json.dumps(
            {"wall": wall, "imports": imported, "cpu": cpu, "peak_mib": usage.ru_maxrss / 1024, "timings": timings}
        )
    )


def _run(audio: Path, width: int, height: int, out: Path, inline: bool, source: Path | None) -> dict[str, Any] | str:
    """One render in a fresh process: its JSON figures, or why it failed."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(audio), str(width), str(height), str(out)]
        + (["--inline-encoding"] if inline else [])
        + (["--source-video", str(source)] if source else []),
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"wall"')]
    if proc.returncode != 0 or not lines:
        return f"(exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[5.0, 30.0, 120.0])
    parser.add_argument("--sizes", nargs="+", default=["480x480", "1280x720"])
    parser.add_argument(
        "--inline-encoding", action="store_true", help="encode on the engine's thread (to compare with the default)"
    )
    parser.add_argument("--dub", action="store_true", help="also dub each portrait render's video (sourceVideo)")
    parser.add_argument("--source-video", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, metavar=("AUDIO", "WIDTH", "HEIGHT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        audio, width, height, out = args.child
        child(audio, int(width), int(height), out, args.inline_encoding, args.source_video)
        return

    load1, load5, _ = os.getloadavg()
    print(
        f"lite engine, {os.cpu_count()} CPU cores (load average {load1:.1f} / {load5:.1f} at start), "
        f"speech = {SPEECH.name} repeated, portrait = {PORTRAIT.name}"
    )
    header = (
        f"{'size':>9} {'speech':>7} {'input':>8} {'load':>6} {'features':>8} {'frames':>7} {'encode':>7} {'render':>7} "
        f"{'total':>7} {'x real time':>11} {'x w/o load':>10} {'CPU s':>6} {'peak RSS':>9}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            for seconds in args.durations:
                audio = Path(tmp) / f"speech-{seconds:g}.wav"
                if not audio.exists():
                    speech_of_length(seconds, audio)
                out = Path(tmp) / f"lite-{size}-{seconds:g}.mp4"
                runs = [("portrait", out, None)]
                if args.dub:
                    runs.append(("dub", Path(tmp) / f"dub-{size}-{seconds:g}.mp4", out))
                for kind, target, source in runs:
                    r = _run(audio, width, height, target, args.inline_encoding, source)
                    if isinstance(r, str):
                        print(f"{size:>9} {seconds:>6g}s {kind:>8} FAILED {r}")
                        continue
                    t = r["timings"]
                    load = t.get("modelLoadSeconds", 0.0)
                    render = t.get("totalSeconds", 0) - load  # the runner's own time, model load left out
                    total = r["wall"]  # process start to outputs written, imports included
                    print(
                        f"{size:>9} {seconds:>6g}s {kind:>8} {load:>5.2f}s {t.get('featureSeconds', 0):>7.2f}s "
                        f"{t.get('generateSeconds', 0):>6.2f}s {t.get('encodeSeconds', 0):>6.2f}s {render:>6.2f}s "
                        f"{total:>6.2f}s {seconds / total:>10.1f}x {seconds / (total - load - r['imports']):>9.1f}x "
                        f"{r['cpu']:>6.1f} {r['peak_mib']:>7.0f}MiB"
                    )
    print(
        "frames = inside the engine; encode = conversion + x264 + AAC + muxing, on a writer thread that "
        "overlaps the frames; render = the runner's total without model load; total = wall time of the "
        "whole process (imports, model load, decode, render, poster, manifest); "
        "'x w/o load' leaves out imports and model load (a warm worker); "
        "CPU s = user + system seconds of the render process (all threads)."
    )


if __name__ == "__main__":
    main()
