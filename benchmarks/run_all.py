"""Run every benchmark and print its figures (speed and memory targets live here, not in tests).

    python benchmarks/run_all.py           # full sizes, as quoted in the docs
    python benchmarks/run_all.py --quick   # smaller runs, what CI prints on every build

Each benchmark is its own script (runnable alone); this one only runs them in turn with
the same interpreter and reports which ones failed to run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, full arguments, quick arguments)
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("runner_placeholder.py", [], ["--lengths", "5", "30", "--sizes", "480x480", "1280x720"]),
    ("lite_engine.py", ["--dub"], ["--durations", "5", "30", "--sizes", "480x480", "1280x720", "--dub"]),
    ("lite_lipsync.py", [], ["--rates", "160"]),
    ("resume.py", [], ["--durations", "20"]),
    ("operator_scale.py", [], ["--objects", "200", "--samples", "10"]),
    # Full size needs a GPU (see the script); here the tiny model checks the script, on 1 and 2 ranks.
    ("multitalk_step.py", ["--tiny", "--gpus", "2"], ["--tiny"]),
    ("multitalk_load_memory.py", [], ["--quick"]),
    ("cluster_scale.py", [], ["--count", "200"]),
    ("image_sizes.py", [], []),  # the images `make images` built
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs (CI)")
    parser.add_argument("--only", nargs="*", default=None, help="script names to run")
    args = parser.parse_args()
    failed: list[str] = []
    for script, full, quick in BENCHMARKS:
        if args.only is not None and script not in args.only:
            continue
        path = HERE / script
        if not path.exists():
            continue
        cmd = [sys.executable, str(path), *(quick if args.quick else full)]
        print(f"\n=== {script} {' '.join(cmd[2:])}", flush=True)
        started = time.perf_counter()
        code = subprocess.call(cmd)
        print(f"=== {script}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(script)
    if failed:
        print("benchmarks that did not run to the end: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
