"""Run the MultiTalk (and InfiniteTalk) parity tests under every CPU code path MKL and ATen can be made to take here.

    python tests/engine_multitalk/parity_paths.py                 # all paths (CI: .ci/run)
    python tests/engine_multitalk/parity_paths.py --paths native MKL_CBWR=AVX2

Each path is one pytest process with MKL_CBWR (MKL's code branch) or ATEN_CPU_CAPABILITY
(ATen's own vectorised kernels) set, since both are read once at start-up. The script
prints, per comparison and path, the margin (error / bound, the worse of the rms and the
worst-element check; parity.py), the same for the deliberate bugs of
test_parity_catches_bugs.py (which must stay above BY_FAR), and exits non-zero if any run
failed. MKL ignores a branch the CPU lacks (AVX512 on an AVX2 machine, anything but
COMPATIBLE on a non-Intel CPU) and runs its automatic one; the header says which apply.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TESTS = [
    "test_transformer_parity.py",
    "test_sampling_parity.py",
    "test_audio_features.py",
    "test_loading.py",
    "test_parity_catches_bugs.py",
    "test_dubbing_parity.py",
]
# The comparisons with committed reference outputs (the loading ones repeat the forward's) and the cheap bugs.
SELECT = "reference and not layout or forward_bug"

PATHS: dict[str, dict[str, str]] = {
    "native": {},
    "MKL_CBWR=SSE4_2": {"MKL_CBWR": "SSE4_2"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "MKL_CBWR=AVX512": {"MKL_CBWR": "AVX512"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    # The least vectorised of both at once: closest to what a CPU without any of these sees.
    "COMPATIBLE+default": {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"},
}
NEEDS_FLAG = {"MKL_CBWR=AVX2": "avx2", "MKL_CBWR=AVX512": "avx512f", "ATEN_CPU_CAPABILITY=avx2": "avx2"}
REPORT_ENV = "MULTITALK_PARITY_REPORT"  # parity.REPORT_ENV (not imported: this script runs without torch loaded)


@dataclass
class Outcome:
    path: str
    code: int
    seconds: float
    rows: list[dict[str, float | str]]
    tail: str


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def run_path(path: str, threads: int) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.jsonl"
        env = {
            **os.environ,
            **PATHS[path],
            REPORT_ENV: str(report),
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
        }
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", SELECT]
        cmd += [str(HERE / name) for name in TESTS]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    return Outcome(path, proc.returncode, seconds, rows, (proc.stdout + proc.stderr)[-3000:])


def print_table(title: str, outcomes: list[Outcome], bugs: bool) -> None:
    names: list[str] = []
    for outcome in outcomes:
        for row in outcome.rows:
            name = str(row["name"])
            if name.startswith("bug: ") == bugs and name not in names:
                names.append(name)
    if not names:
        return
    width = max(len(n) for n in names)
    print(f"\n{title}")
    print(" " * width + "".join(f" {i + 1:>6}" for i in range(len(outcomes))))
    worst = [0.0 if not bugs else float("inf") for _ in outcomes]
    for name in names:
        cells = []
        for i, outcome in enumerate(outcomes):
            margins = [float(r["margin"]) for r in outcome.rows if r["name"] == name]
            if not margins:
                cells.append(f" {'-':>6}")
                continue
            value = max(margins)
            worst[i] = min(worst[i], value) if bugs else max(worst[i], value)
            cells.append(f" {value:>6.0f}" if bugs else f" {value:>6.2f}")
        print(name.ljust(width) + "".join(cells))
    label = "smallest" if bugs else "worst"
    print(label.ljust(width) + "".join(f" {w:>6.0f}" if bugs else f" {w:>6.2f}" for w in worst))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="*", default=list(PATHS), choices=list(PATHS), help="paths to run")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)), help="paths run at once")
    args = parser.parse_args()
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    flags = cpu_flags()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda p: run_path(p, threads), args.paths))
    print(f"MultiTalk parity across CPU code paths ({args.jobs} at once, {threads} thread(s) each)")
    for i, outcome in enumerate(outcomes):
        flag = NEEDS_FLAG.get(outcome.path)
        note = (
            f"  (this CPU lacks {flag}: the library's automatic path)" if flag and flags and flag not in flags else ""
        )
        status = "passed" if outcome.code == 0 else f"FAILED (exit {outcome.code})"
        print(f"  {i + 1}. {outcome.path}: {status}, {outcome.seconds:.0f} s{note}")
    print_table("margin = error / bound (must stay at most 1)", outcomes, bugs=False)
    print_table("deliberate bugs: error / bound (must stay above 10)", outcomes, bugs=True)
    failed = [o for o in outcomes if o.code != 0]
    for outcome in failed:
        print(f"\n--- {outcome.path} failed:\n{outcome.tail}")
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} paths passed in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
