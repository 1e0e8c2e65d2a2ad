"""Placeholder-engine render speed, cold start and peak memory (figures, not assertions).

For 5 s, 30 s and 120 s of speech at 480x480 and 1280x720, 25 fps, each render runs in a
fresh Python process (as in a pod) and we report:
  - speed: seconds of video per second of wall time (multiple of real time),
  - first frame: process start to the first generated frame (interpreter, imports, decode),
  - peak RSS of that process (flat across lengths means frames are streamed),
  - CPU seconds used (user + system, all threads): "x cpu" = video seconds per CPU second, a
    figure that other load on the machine disturbs less than wall time.
Targets on 2 cores: >= 20x real time at 480p, first frame < 1.5 s, peak RSS < 300 MB.

    python benchmarks/runner_placeholder.py [--lengths 5 30 120] [--sizes 480x480 1280x720]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "media" / "hello.wav"


def speech_of(seconds: float, path: Path) -> Path:
    """The example speech repeated to the wanted length (16-bit PCM WAV)."""
    with wave.open(str(HELLO)) as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
    need = int(seconds * params.framerate) * params.sampwidth * params.nchannels
    data = (frames * (need // len(frames) + 1))[:need]
    with wave.open(str(path), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(data)
    return path


def child(audio: str, width: int, height: int, out: str, preset: str | None, inline: bool) -> None:
    """One render in this process, as the CLI does it; prints its timings as JSON."""
    from multitalk.runner.pipeline import Pipeline
    from multitalk.runner.request import RenderRequest

    request = RenderRequest.model_validate(
        {
            "engine": "placeholder",
            "image": str(REPO / "examples" / "media" / "portrait.jpg"),
            "speakers": [{"audio": audio}],
            "video": {"width": width, "height": height, "fps": 25, "maxDurationSeconds": 600},
            "output": {"uri": out, "overwrite": True},
        }
    )
    pipeline = Pipeline(request, Path("/nonexistent-models"), x264_preset=preset, background_encoding=not inline)
    result = pipeline.run()
    assert pipeline.first_frame_at is not None
    first_frame_wall = time.time() - (time.perf_counter() - pipeline.first_frame_at)
    print(json.dumps({"firstFrameWall": first_frame_wall, "result": json.loads(result.to_json())}))


def measure(audio: Path, seconds: float, size: str, out: Path, preset: str, inline: bool) -> dict[str, float]:
    width, height = (int(x) for x in size.split("x"))
    cmd = [sys.executable, __file__, "--child", str(audio), str(width), str(height), str(out), preset, str(int(inline))]
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    text = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"render failed ({proc.returncode}): {text}")
    report = json.loads(text.strip().splitlines()[-1])
    timings = report["result"]["timings"]
    return {
        "seconds": seconds,
        "wall": wall,
        "speed": seconds / wall,
        "renderSpeed": seconds / timings["totalSeconds"],
        "firstFrame": report["firstFrameWall"] - start,
        "peakRssMB": usage.ru_maxrss / 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
        "cpuSpeed": seconds / (usage.ru_utime + usage.ru_stime),
        "generate": timings["generateSeconds"],
        "encode": timings["encodeSeconds"],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        child(a[0], int(a[1]), int(a[2]), a[3], a[4] if a[4] != "default" else None, a[5] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[5.0, 30.0, 120.0])
    parser.add_argument("--sizes", nargs="+", default=["480x480", "1280x720"])
    parser.add_argument("--preset", default="default", help="libx264 preset (default: the runner's choice per engine)")
    parser.add_argument(
        "--inline-encoding", action="store_true", help="encode on the engine's thread (to compare with the default)"
    )
    args = parser.parse_args()
    print(f"placeholder engine, 25 fps, x264 preset {args.preset}, {os.cpu_count()} CPUs")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other work shares these CPUs)")
    print(
        f"{'size':>9} {'speech':>7} {'wall s':>7} {'x real':>7} {'render x':>8} {'cpu s':>6} {'x cpu':>6} "
        f"{'1st frame':>9} {'gen s':>6} {'enc s':>6} {'RSS MB':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for seconds in args.lengths:
                audio = speech_of(seconds, Path(tmp) / f"speech-{seconds:g}.wav")
                m = measure(
                    audio, seconds, size, Path(tmp) / f"out-{size}-{seconds:g}.mp4", args.preset, args.inline_encoding
                )
                print(
                    f"{size:>9} {seconds:>6g}s {m['wall']:>7.2f} {m['speed']:>6.1f}x {m['renderSpeed']:>7.1f}x "
                    f"{m['cpu']:>6.2f} {m['cpuSpeed']:>5.1f}x {m['firstFrame']:>8.2f}s "
                    f"{m['generate']:>6.2f} {m['encode']:>6.2f} {m['peakRssMB']:>7.0f}"
                )


if __name__ == "__main__":
    main()
