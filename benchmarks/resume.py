"""Resume benchmark: the engine time a resume saves when a render is preempted half-way.

Lite, measured on the CPU: per length, an uninterrupted render; then one SIGKILLed once half
its frames are generated (its progress lines say when) and run again, which resumes after
the last checkpoint. Without resume the rerun would cost a whole render again; printed are
both totals and what the resume saved, in wall time and in engine (generate) time, plus the
cost of checkpointing (checkpointSeconds of the uninterrupted render).

MultiTalk, computed: its streaming windows for each length (the engine's own window rule),
each costing steps x the step time (`--step-seconds`, a measured figure of
benchmarks/multitalk_step.py; default the A100 anchor of docs/engines/multitalk.md). A
preemption at 50% with resume loses the window in flight (half a window on average); without
resume it loses every finished window too. MultiTalk checkpoints as each window's new frames
are drained (docs/runner.md, Resuming), so a resume loses only the window in flight; printed
too is the engine state each checkpoint carries at --size (its float32 motion frames).

    python benchmarks/resume.py [--durations 30 120] [--size 480x480] [--step-seconds 35 --steps 40]
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lite_engine import PORTRAIT, speech_of_length

from multitalk.runner.progress import Stage
from multitalk.runner.progress_display import STAGE_SPAN

RUNNER = [sys.executable, "-m", "multitalk.runner.cli"]


def render_args(audio: Path, out: Path, size: str) -> list[str]:
    width, height = size.split("x")
    return ["render", "--audio", str(audio), "--image", str(PORTRAIT), "--engine", "lite", "--out", str(out),
            "--width", width, "--height", height, "--max-duration", "600"]  # fmt: skip


def run(args: list[str], result: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([*RUNNER, *args, "--no-progress", "--result", str(result)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"render failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, json.loads(result.read_text())


def killed_at_half(args: list[str]) -> float:
    """Wall time of a render SIGKILLed once half its frames are generated."""
    low, high = STAGE_SPAN[Stage.GENERATE]
    half = low + (high - low) / 2
    start = time.perf_counter()
    proc = subprocess.Popen([*RUNNER, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("stage") == Stage.GENERATE and event.get("percent", 0) >= half:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise SystemExit("the render ended before half its frames: use a longer --durations")
    return time.perf_counter() - start


def lite(durations: list[float], size: str) -> None:
    print(f"lite on the CPU, {size} @ 25 fps, killed once half the frames are generated")
    print(
        f"{'speech':>7} {'windows':>7} {'uninterrupted':>13} {'killed at':>9} {'resumed':>8} "
        f"{'restart total':>13} {'resume total':>12} {'saved':>6} {'engine: full / resumed':>22} {'checkpoints':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for seconds in durations:
            audio = d / f"speech-{seconds:g}.wav"
            speech_of_length(seconds, audio)
            full_wall, full = run(render_args(audio, d / f"full-{seconds:g}.mp4", size), d / "r.json")
            args = render_args(audio, d / f"cut-{seconds:g}.mp4", size)
            killed = killed_at_half(args)
            resumed_wall, resumed = run(args, d / "r.json")
            restart_total, resume_total = killed + full_wall, killed + resumed_wall
            r = resumed["resume"]
            t_full, t_res = full["timings"], resumed["timings"]
            print(
                f"{seconds:6.0f}s {r['windowsTotal']:7d} {full_wall:12.2f}s {killed:8.2f}s {resumed_wall:7.2f}s "
                f"{restart_total:12.2f}s {resume_total:11.2f}s {restart_total - resume_total:5.2f}s "
                f"{t_full['generateSeconds']:9.2f}s / {t_res['generateSeconds']:.2f}s "
                f"{t_full.get('checkpointSeconds', 0):10.2f}s"
            )
            print(f"{'':8}resumed from frame {r['resumedFromFrame']} of {full['output']['frames']}")


def multitalk_windows(seconds: float) -> int:
    """Streaming windows of a render (the engine's own rule, from its pipeline)."""
    from multitalk.runner.engines.multitalk.engine import MODEL_FPS, MOTION_FRAMES, window_plan
    from multitalk.runner.engines.multitalk.pipeline import MultiTalkPipeline, Settings

    frames_25 = max(1, math.ceil(seconds * MODEL_FPS))
    frame_num, streaming = window_plan(frames_25)
    settings = Settings(
        frame_num=frame_num, motion_frames=MOTION_FRAMES, streaming=streaming, max_frames=max(frames_25, frame_num + 1)
    )
    return MultiTalkPipeline._windows_total(max(frame_num + 1, frames_25), settings)


def multitalk(durations: list[float], steps: int, step_seconds: float, size: str) -> None:
    from multitalk.runner.engines.multitalk.engine import MOTION_FRAMES, generation_size
    from multitalk.runner.engines.multitalk.env_settings import AREAS
    from multitalk.runner.engines.multitalk.resume_state import tail_bytes

    window = steps * step_seconds
    print(f"\nmultitalk, computed: {steps} steps x {step_seconds:g} s a step = {window / 60:.1f} GPU min a window")
    width, height = (int(x) for x in size.split("x"))
    gen_h, gen_w = generation_size(width, height, AREAS["480"])
    state = tail_bytes(MOTION_FRAMES, gen_h, gen_w)
    print(
        f"engine state per checkpoint, {size} at 480p: {state / 2**20:.1f} MiB "
        f"({MOTION_FRAMES} float32 frames at {gen_w}x{gen_h})"
    )
    print(f"{'speech':>7} {'windows':>7} {'render':>9} {'lost, restart':>13} {'lost, resume':>12} {'saved':>9}")
    for seconds in durations:
        n = multitalk_windows(seconds)
        done = n // 2  # finished when preempted at 50%
        # The window in flight is lost either way; on average half of it was done.
        in_flight = 0.5 * window
        lost_restart = done * window + in_flight
        lost_resume = in_flight
        print(
            f"{seconds:6.0f}s {n:7d} {n * window / 60:7.1f}min {lost_restart / 60:11.1f}min "
            f"{lost_resume / 60:10.1f}min {(lost_restart - lost_resume) / 60:7.1f}min"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[30.0, 120.0])
    parser.add_argument("--size", default="480x480")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--step-seconds", type=float, default=35.0, help="one 81-frame window's step, one GPU")
    args = parser.parse_args()
    lite(args.durations, args.size)
    multitalk(
        sorted({*args.durations, 40.0, 600.0}), args.steps, args.step_seconds, args.size
    )  # 40 s: the example


if __name__ == "__main__":
    main()
