"""`multitalk-runner render|check`: the runner's command line and its exit-code contract."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

# Only the standard library and errors.py at module level: `render` installs its SIGTERM
# handler before pydantic, numpy, PyAV or an engine's stack load (about a second here,
# far longer on a cold node), so an early SIGTERM still exits 1 with a result.
from multitalk.runner.errors import ExitCode, InvalidInput, Retryable, RunnerError, UsageError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from multitalk.runner.pipeline import Pipeline
    from multitalk.runner.progress_display import ProgressReporter
    from multitalk.runner.request import RenderRequest
    from multitalk.runner.result import RunResult

DEFAULT_MODEL_DIR = "/models"
TERMINATION_LOG = Path("/dev/termination-log")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="multitalk-runner",
        description="Render a talking video from speech and a portrait, or check what can run here.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser(
        "render",
        help="render one video",
        description=(
            "Render one video. The request comes from --request FILE (JSON), else the MULTITALK_REQUEST "
            "environment variable (JSON), else the flags; flags given alongside a request override its fields. "
            "Exit codes: 0 done, 1 retryable failure, 2 usage, 3 invalid input, 4 engine unavailable, "
            "5 storage refused."
        ),
    )
    r.add_argument("--request", metavar="FILE", help="render request JSON (camelCase fields, as in the TalkingVideo)")
    r.add_argument(
        "--audio", action="append", metavar="URI", help="speech (s3://, https://, file://, data:, path); twice for two"
    )
    r.add_argument("--image", metavar="URI", help="reference portrait (jpeg, png, webp)")
    r.add_argument("--out", metavar="URI", help="output video: s3://bucket/key.mp4, file:// or a path ending .mp4")
    r.add_argument(
        "--engine", choices=["auto", "multitalk", "lite", "placeholder"], help="auto: the best available here"
    )
    r.add_argument("--allow-fallback", action="store_true", default=None, help="let a weaker engine stand in")
    r.add_argument("--width", type=int, help="video width, even, 64..1920 (default 480)")
    r.add_argument("--height", type=int, help="video height, even, 64..1920 (default 480)")
    r.add_argument("--fps", type=int, help="frames per second, 1..60 (default 25)")
    r.add_argument("--duration", type=float, metavar="SECONDS", help="force the length (trim or pad the speech)")
    r.add_argument("--max-duration", type=float, metavar="SECONDS", help="refuse longer speech (default 60)")
    r.add_argument(
        "--audio-mode", choices=["sequential", "simultaneous"], help="two speakers: take turns or talk at once"
    )
    r.add_argument("--prompt", help="scene description (multitalk engine)")
    r.add_argument("--seed", type=int, help="random seed")
    r.add_argument("--overwrite", action="store_true", default=None, help="replace an existing video")
    r.add_argument("--endpoint", metavar="URL", help="S3 endpoint (credentials from AWS_* environment variables)")
    r.add_argument("--region", help="S3 region")
    r.add_argument(
        "--result",
        metavar="FILE",
        help="result JSON path (default: MULTITALK_RESULT_PATH, else /dev/termination-log when it exists)",
    )
    r.add_argument("--model-dir", metavar="DIR", help="model cache (default: MULTITALK_MODEL_DIR, else /models)")
    r.add_argument("--no-progress", action="store_true", help="print no progress (bar or JSON lines)")
    c = sub.add_parser("check", help="print JSON: engines available here and why not, GPU, models, versions")
    c.add_argument("--model-dir", metavar="DIR", help="model cache (default: MULTITALK_MODEL_DIR, else /models)")
    c.add_argument(
        "--require",
        metavar="ENGINE",
        choices=["multitalk", "lite", "placeholder"],
        help="exit 4 unless ENGINE (multitalk, lite or placeholder) is available here (`helm test` uses this)",
    )
    return parser


def _model_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("MULTITALK_MODEL_DIR") or DEFAULT_MODEL_DIR)


def _base_request(args: argparse.Namespace) -> dict[str, Any]:
    if args.request:
        try:
            text = Path(args.request).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read --request {args.request}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"--request {args.request} is not UTF-8 text: {exc.reason}", "request") from exc
        return parse_request_json(text, f"--request {args.request}")
    if os.environ.get("MULTITALK_REQUEST"):
        return parse_request_json(os.environ["MULTITALK_REQUEST"], "MULTITALK_REQUEST")
    return {}


def parse_request_json(text: str, source: str) -> dict[str, Any]:
    """The request text as a JSON object (the request models validate it next)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{source} is not valid JSON: {exc}", "request") from exc
    except RecursionError as exc:  # json recurses once per nesting level
        raise InvalidInput(f"{source} is nested too deeply to be a render request", "request") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{source} must be a JSON object", "request")
    return data


def validate_request(data: dict[str, Any]) -> RenderRequest:
    """The request models' verdict; a refusal names the first field at fault (exit 3)."""
    from pydantic import ValidationError

    from multitalk.runner.request import RenderRequest

    try:
        return RenderRequest.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from exc


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The request as a wire dict: file/env request, then flags on top."""
    data = _base_request(args)
    if args.audio:
        data["speakers"] = [{"audio": a} for a in args.audio]
    for flag, key in (
        ("image", "image"),
        ("engine", "engine"),
        ("allow_fallback", "allowFallback"),
        ("audio_mode", "audioMode"),
        ("prompt", "prompt"),
    ):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    for flag, section, key in (
        ("width", "video", "width"),
        ("height", "video", "height"),
        ("fps", "video", "fps"),
        ("duration", "video", "durationSeconds"),
        ("max_duration", "video", "maxDurationSeconds"),
        ("seed", "sampling", "seed"),
        ("out", "output", "uri"),
        ("overwrite", "output", "overwrite"),
        ("endpoint", "storage", "endpoint"),
        ("region", "storage", "region"),
    ):
        if getattr(args, flag) is not None:
            section_data = data.setdefault(section, {})
            if not isinstance(section_data, dict):
                raise InvalidInput("must be an object", section)
            section_data[key] = getattr(args, flag)
    if "speakers" not in data or "output" not in data:
        raise UsageError("give --request FILE, MULTITALK_REQUEST, or at least --audio and --out")
    return data


def _field_name(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "request"


def _validation_error(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    extra = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return InvalidInput(message + extra, _field_name(first["loc"]))


def _result_path(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    if os.environ.get("MULTITALK_RESULT_PATH"):
        return Path(os.environ["MULTITALK_RESULT_PATH"])
    return TERMINATION_LOG if TERMINATION_LOG.exists() else None


def _write_result(result: RunResult, path: Path | None) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.to_json())
    except OSError as exc:
        print(f"multitalk-runner: warning: could not write result to {path}: {exc.strerror}", file=sys.stderr)


class _Termination:
    """SIGTERM during `render`. While the result models load, a SIGTERM is only noted (an
    exception there could leave pydantic half-imported and no result writable); once they
    are in, it raises Retryable, which unwinds the render so temp files and uploads are
    cleaned up, and a noted one raises at that point."""

    def __init__(self) -> None:
        self.noted = False
        signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.noted = True

    def arm(self) -> None:
        signal.signal(signal.SIGTERM, _terminated)
        if self.noted:
            _terminated(signal.SIGTERM, None)

    def disarm(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a late SIGTERM must not cost the result


def _render(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    termination = _Termination()  # first, before anything heavy is imported
    importlib.import_module("multitalk.runner.result")  # pydantic and the result models, SIGTERM noted only

    reporter: ProgressReporter | None = None
    pipeline: Pipeline | None = None
    try:
        termination.arm()
        # Imported here so `check` and `--help` stay fast and usage errors need no PyAV.
        from multitalk.runner.pipeline import Pipeline
        from multitalk.runner.progress_display import ProgressReporter

        reporter = ProgressReporter(enabled=not args.no_progress)
        request = validate_request(request_from_args(args))
        pipeline = Pipeline(request, _model_dir(args.model_dir), progress=reporter.update, started=started)
        result = pipeline.run()
    except RunnerError as exc:
        result = _failure(exc, exc.exit_code, pipeline)
    except Exception as exc:  # anything unforeseen is retryable, but still leaves a result
        traceback.print_exc(file=sys.stderr)
        err = RunnerError(f"{type(exc).__name__}: {exc}")
        result = _failure(err, ExitCode.RETRYABLE, pipeline)
    finally:
        termination.disarm()
        if reporter is not None:
            reporter.close()
    _write_result(result, _result_path(args.result))
    _summarise(result, reporter.tty if reporter is not None else sys.stdout.isatty())
    return result.exit_code


def _terminated(signum: int, frame: FrameType | None) -> NoReturn:
    raise Retryable("terminated by SIGTERM (deadline, eviction or cancellation) before the render finished")


def _failure(exc: RunnerError, code: ExitCode, pipeline: Pipeline | None) -> RunResult:
    from multitalk.runner.result import FailureReport, RunResult, Timings

    return RunResult(
        ok=False,
        exit_code=int(code),
        engine=pipeline.engine_report if pipeline is not None else None,
        timings=pipeline.timings if pipeline is not None else Timings(),
        audio=pipeline.audio_report if pipeline is not None else None,
        error=FailureReport(reason=exc.reason, message=exc.message, field=exc.field),
    )


def _summarise(result: RunResult, tty: bool) -> None:
    if result.error is not None:
        where = f"{result.error.field}: " if result.error.field else ""
        print(f"multitalk-runner: error ({result.error.reason}): {where}{result.error.message}", file=sys.stderr)
    if not tty:
        print(json.dumps({"event": "result", "result": json.loads(result.to_json())}, separators=(",", ":")))
    elif result.output is not None and result.engine is not None:
        o = result.output
        print(
            f"wrote {o.uri}: {o.frames} frames, {o.duration_seconds:.2f} s, {o.width}x{o.height} @ {o.fps} fps, "
            f"engine {result.engine.name} in {result.timings.total_seconds:.1f} s"
        )
        if result.engine.fallback_reason:
            print(f"note: engine {result.engine.name} ran because {result.engine.fallback_reason}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"multitalk-runner: error: {exc.message}", file=sys.stderr)
        _write_result(_failure(exc, ExitCode.USAGE, None), _result_path(None))
        return int(ExitCode.USAGE)
    if args.command == "check":
        from multitalk.runner.check import check_report

        report = check_report(_model_dir(args.model_dir))
        print(json.dumps(report, indent=2))
        if args.require and not report["engines"][args.require]["available"]:
            reason = report["engines"][args.require]["reason"]
            print(f"multitalk-runner: engine {args.require} is not available: {reason}", file=sys.stderr)
            return int(ExitCode.ENGINE_UNAVAILABLE)
        return int(ExitCode.OK)
    return _render(args)


if __name__ == "__main__":
    sys.exit(main())
