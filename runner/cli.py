"""`multitalk-runner render|check`: the runner's command line and its exit-code contract."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, get_args

from pydantic import ValidationError

from multitalk.runner.errors import ExitCode, InvalidInput, Retryable, RunnerError, UsageError
from multitalk.runner.flags import add_request_flags, apply_flags
from multitalk.runner.request import DEFAULT_MODEL_DIR, MODEL_DIR_ENV, REQUEST_ENV, EngineName, validation_problems
from multitalk.runner.result import RESULT_PATH_ENV, FailureReport, RunResult, Timings
from multitalk.runner.result import TERMINATION_LOG as TERMINATION_LOG_PATH

if TYPE_CHECKING:
    from multitalk.runner.pipeline import Pipeline

TERMINATION_LOG = Path(TERMINATION_LOG_PATH)


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
    r.add_argument(
        "--result",
        metavar="FILE",
        help="result JSON path (default: MULTITALK_RESULT_PATH, else /dev/termination-log when it exists)",
    )
    r.add_argument("--model-dir", metavar="DIR", help="model cache (default: MULTITALK_MODEL_DIR, else /models)")
    r.add_argument("--no-progress", action="store_true", help="print no progress (bar or JSON lines)")
    add_request_flags(r)
    c = sub.add_parser("check", help="print JSON: engines available here and why not, GPU, models, versions")
    c.add_argument("--model-dir", metavar="DIR", help="model cache (default: MULTITALK_MODEL_DIR, else /models)")
    c.add_argument(
        "--require",
        metavar="ENGINE",
        choices=[name for name in get_args(EngineName) if name != "auto"],
        help="exit 4 unless ENGINE (multitalk, lite or placeholder) is available here (`helm test` uses this)",
    )
    return parser


def _model_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)


def _base_request(args: argparse.Namespace) -> dict[str, Any]:
    if args.request:
        try:
            text = Path(args.request).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read --request {args.request}: {exc.strerror}") from exc
        source = f"--request {args.request}"
    elif os.environ.get(REQUEST_ENV):
        text, source = os.environ[REQUEST_ENV], REQUEST_ENV
    else:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{source} is not valid JSON: {exc}", "request") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{source} must be a JSON object", "request")
    return data


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The request as a wire dict: file/env request, then flags on top."""
    data = _base_request(args)
    if args.audio:
        data["speakers"] = [{"audio": a} for a in args.audio]
    apply_flags(args, data, InvalidInput)
    if "speakers" not in data or "output" not in data:
        raise UsageError(f"give --request FILE, {REQUEST_ENV}, or at least --audio and --out")
    return data


def _validation_error(exc: ValidationError) -> InvalidInput:
    (field, message), *more = validation_problems(exc)
    extra = f" (and {len(more)} more problems)" if more else ""
    return InvalidInput(message + extra, field or "request")


def _result_path(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    if os.environ.get(RESULT_PATH_ENV):
        return Path(os.environ[RESULT_PATH_ENV])
    return TERMINATION_LOG if TERMINATION_LOG.exists() else None


def _write_result(result: RunResult, path: Path | None) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.to_json())
    except OSError as exc:
        print(f"multitalk-runner: warning: could not write result to {path}: {exc.strerror}", file=sys.stderr)


def _render(args: argparse.Namespace) -> int:
    # Imported here so `check` and `--help` stay fast and usage errors need no PyAV.
    from multitalk.runner.pipeline import Pipeline
    from multitalk.runner.progress_display import ProgressReporter
    from multitalk.runner.request import RenderRequest

    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _terminated)  # deadline or eviction: clean up, leave a result
    reporter = ProgressReporter(enabled=not args.no_progress)
    pipeline: Pipeline | None = None
    try:
        try:
            request = RenderRequest.model_validate(request_from_args(args))
        except ValidationError as exc:
            raise _validation_error(exc) from exc
        pipeline = Pipeline(request, _model_dir(args.model_dir), progress=reporter.update, started=started)
        result = pipeline.run()
    except RunnerError as exc:
        result = _failure(exc, exc.exit_code, pipeline)
    except Exception as exc:  # anything unforeseen is retryable, but still leaves a result
        traceback.print_exc(file=sys.stderr)
        err = RunnerError(f"{type(exc).__name__}: {exc}")
        result = _failure(err, ExitCode.RETRYABLE, pipeline)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a late SIGTERM must not cost the result
        reporter.close()
    _write_result(result, _result_path(args.result))
    _summarise(result, reporter.tty)
    return result.exit_code


def _terminated(signum: int, frame: object) -> NoReturn:
    raise Retryable("terminated by SIGTERM (deadline, eviction or cancellation) before the render finished")


def _failure(exc: RunnerError, code: ExitCode, pipeline: Pipeline | None) -> RunResult:
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
