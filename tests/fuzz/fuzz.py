"""Coverage-guided fuzzing (atheris: libFuzzer for Python) of the runner's input decoding.

    python tests/fuzz/fuzz.py image --seconds 60     # one target, time-boxed
    python tests/fuzz/fuzz.py --all --seconds 60     # every target in turn (CI: make fuzz-quick)
    python tests/fuzz/fuzz.py audio -- -runs=1 FILE  # replay one input (any libFuzzer flags after --)

Targets (fuzz_targets.py): `image` (Pillow through runner/image.py), `audio` (PyAV through
runner/audio.py), `request` (MULTITALK_REQUEST JSON through the request models, inline
data: inputs and the bbox checks). Each starts from its committed seeds
(tests/fuzz/seeds/TARGET) and earlier findings (tests/fuzz/crashes/TARGET); new corpus
entries go to build/fuzz/TARGET/corpus, a finding to build/fuzz/TARGET/crash-* (or
timeout-*, oom-*). A finding is an input that escapes as anything but InvalidInput
(exit 3 naming a field), runs past TIMEOUT_SECONDS, or takes more than RSS_LIMIT_MB:
copy it under tests/fuzz/crashes/TARGET with a name that says what it is, fix the runner,
and test_fuzz_regressions.py replays it from then on.

Coverage feedback comes from the Python code (the runner, Pillow's format plugins,
pydantic's Python layer); Pillow's C decoders and FFmpeg are not instrumented, so there
libFuzzer mutates the seeds without guidance. Exit status: 0 when no target found
anything, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORK = REPO / "build" / "fuzz"
TARGETS = ("image", "audio", "video", "request")
TIMEOUT_SECONDS = 20  # per input: every one is a few KB, decoded in milliseconds
RSS_LIMIT_MB = 2048
SEED = 1  # libFuzzer's random seed: a CI round mutates the same way each time


def request_vocabulary() -> tuple[list[str], list[str]]:
    """The request's wire field names, and a libFuzzer dictionary: those names and every literal value."""
    from multitalk.runner.request import INPUT_SCHEMES, RenderRequest

    names: set[str] = set()
    tokens: set[str] = {"true", "false", "null", "NaN", "Infinity", "-Infinity", "1e308", "-0", "[", "]", "{", "}"}
    tokens |= {f"{s}://" for s in INPUT_SCHEMES if s != "data"} | {"data:", ";base64,", ".mp4", ".safetensors", ".."}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    names.update(value)
                if key == "enum" and isinstance(value, list):
                    tokens.update(json.dumps(v) for v in value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(RenderRequest.model_json_schema(by_alias=True))
    tokens |= {f'"{name}"' for name in names}
    return sorted(names), sorted(tokens)


def _write_dictionary(path: Path, tokens: list[str]) -> None:
    lines = []
    for token in tokens:
        escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02x}" for c in token)
        lines.append(f'"{escaped}"')
    path.write_text("\n".join(lines) + "\n")


def libfuzzer_args(target: str, seconds: float | None, dictionary: list[str] | None) -> list[str]:
    """Corpus folders and flags for one target (the first folder is the one libFuzzer writes)."""
    work = WORK / target
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    args = [str(corpus)]
    for folder in (HERE / "seeds" / target, HERE / "crashes" / target):
        if folder.is_dir():
            args.append(str(folder))
    args += [
        f"-artifact_prefix={work}/",
        f"-timeout={TIMEOUT_SECONDS}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-seed={SEED}",
        "-print_final_stats=1",
    ]
    if seconds is not None:
        args.append(f"-max_total_time={int(seconds)}")
    if dictionary:
        path = work / f"{target}.dict"
        _write_dictionary(path, dictionary)
        args.append(f"-dict={path}")
    return args


def fuzz_one(target: str, seconds: float | None, extra: list[str]) -> None:
    """Run in this process until libFuzzer stops (time box, -runs) or finds something (it exits)."""
    import warnings

    import atheris

    warnings.simplefilter("ignore")  # Pillow warns on every corrupt EXIF block: noise at thousands of runs a second
    # Instrument the code that parses the input; what was imported before is not traced.
    with atheris.instrument_imports(include=["multitalk.runner", "PIL", "pydantic"]):
        import fuzz_targets
    options: dict[str, object] = {}
    dictionary = None
    if target == "request":
        import json_mutator

        names, dictionary = request_vocabulary()
        # atheris.Mutate is looked up per call: Setup() swaps in the libFuzzer-backed one.
        options["custom_mutator"] = json_mutator.make_mutator(names, lambda data, size: atheris.Mutate(data, size))
    replay = any(not a.startswith("-") for a in extra)  # files to run once: no corpus folders
    libfuzzer = extra if replay else [*libfuzzer_args(target, seconds, dictionary), *extra]
    one_input = fuzz_targets.TARGETS[target]

    def test_one_input(data: bytes) -> None:  # libFuzzer reads a return value as a verdict: give none
        one_input(data)

    atheris.Setup([sys.argv[0], *libfuzzer], test_one_input, **options)
    atheris.Fuzz()


def run_all(targets: list[str], seconds: float) -> int:
    """Each target in its own process (a finding ends libFuzzer's process): a summary at the end."""
    found: list[str] = []
    for target in targets:
        print(f"\n=== fuzz {target} for {seconds:g} s", flush=True)
        earlier = set(_findings(target))
        started = time.monotonic()
        code = subprocess.call([sys.executable, __file__, target, "--seconds", str(seconds)])
        took = time.monotonic() - started
        findings = [name for name in _findings(target) if name not in earlier]
        print(f"=== fuzz {target}: exit {code} after {took:.0f} s; findings: {', '.join(findings) or 'none'}")
        if code != 0:
            found.append(target)
    if found:
        print(f"fuzzing found inputs that break the runner ({', '.join(found)}): see build/fuzz/TARGET/")
        return 1
    return 0


def _findings(target: str) -> list[str]:
    """libFuzzer's artifacts for a target: crash-*, timeout-*, oom-* ... files."""
    kinds = ("crash", "timeout", "oom", "leak", "slow-unit")
    return sorted(p.name for p in (WORK / target).glob("*-*") if p.name.rsplit("-", 1)[0] in kinds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", choices=TARGETS)
    parser.add_argument("--all", action="store_true", help="every target, each for --seconds")
    parser.add_argument("--seconds", type=float, default=None, help="time box per target (default: until a finding)")
    parser.add_argument("--fresh", action="store_true", help="start from the seeds, dropping the working corpus")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags or inputs, after --")
    args = parser.parse_args()
    targets = list(TARGETS) if args.all else [args.target] if args.target else []
    if not targets:
        parser.error("name a target or give --all")
    if args.fresh:
        for target in targets:
            shutil.rmtree(WORK / target, ignore_errors=True)
    if args.all:
        return run_all(targets, args.seconds if args.seconds is not None else 60)
    sys.path.insert(0, str(HERE))
    fuzz_one(targets[0], args.seconds, args.libfuzzer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
