"""`multitalk-runner render|check|clean-scratch`: the runner's command line and its exit-code contract."""

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
from typing import TYPE_CHECKING, Any, NoReturn, get_args

# Only the standard library and errors.py at module level: `main` installs its SIGTERM
# handler before pydantic, numpy, PyAV or an engine's stack load (about a second here,
# far longer on a cold node), so an early SIGTERM still exits 1 with a result.
from multitalk.runner.errors import ExitCode, InvalidInput, Retryable, RunnerError, UsageError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from multitalk.runner.pipeline import Pipeline
    from multitalk.runner.progress_display import ProgressReporter
    from multitalk.runner.request import RenderRequest
    from multitalk.runner.result import RunResult


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    # The flags come from the request models (pydantic): imported here, after the SIGTERM handler.
    from multitalk.runner.flags import add_request_flags
    from multitalk.runner.request import EngineName

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
    k = sub.add_parser(
        "clean-scratch",
        help="remove the resume checkpoints a request's unfinished render left (the operator's clean-up Job)",
        description=(
            "Remove <folder of output.uri>/.multitalk-resume/<request sha256>/ for the request from --request FILE, "
            "else MULTITALK_REQUEST. Exit codes: 0 removed (or nothing there), 1 retryable (storage unreachable), "
            "2 usage, 3 invalid request, 5 storage refused."
        ),
    )
    k.add_argument("--request", metavar="FILE", help="render request JSON (camelCase fields, as in the TalkingVideo)")
    return parser


def _clean_scratch(args: argparse.Namespace) -> int:
    """No result file: the clean-up Job's outcome is its exit code and stderr (nobody reads a status)."""
    from multitalk.runner.request import REQUEST_ENV
    from multitalk.runner.resume import remove_scratch

    try:
        data = _base_request(args)
        if not data:
            raise UsageError(f"give --request FILE or {REQUEST_ENV}")
        uri = remove_scratch(validate_request(data))
    except RunnerError as exc:
        where = f"{exc.field}: " if exc.field else ""
        print(f"multitalk-runner: error ({exc.reason}): {where}{exc.message}", file=sys.stderr)
        return int(exc.exit_code)
    print(json.dumps({"event": "scratch-removed", "scratch": uri}, separators=(",", ":")))
    return int(ExitCode.OK)


def _model_dir(arg: str | None) -> Path:
    from multitalk.runner.request import DEFAULT_MODEL_DIR, MODEL_DIR_ENV

    return Path(arg or os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)


def _base_request(args: argparse.Namespace) -> dict[str, Any]:
    from multitalk.runner.request import REQUEST_ENV

    if args.request:
        try:
            text = Path(args.request).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read --request {args.request}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"--request {args.request} is not UTF-8 text: {exc.reason}", "request") from exc
        return parse_request_json(text, f"--request {args.request}")
    if os.environ.get(REQUEST_ENV):
        return parse_request_json(os.environ[REQUEST_ENV], REQUEST_ENV)
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
    from multitalk.runner.flags import apply_flags
    from multitalk.runner.request import REQUEST_ENV

    data = _base_request(args)
    if args.audio:
        data["speakers"] = [{"audio": a} for a in args.audio]
    apply_flags(args, data, InvalidInput)
    if "speakers" not in data or "output" not in data:
        raise UsageError(f"give --request FILE, {REQUEST_ENV}, or at least --audio and --out")
    return data


def _validation_error(exc: ValidationError) -> InvalidInput:
    from multitalk.runner.request import validation_problems

    (field, message), *more = validation_problems(exc)
    extra = f" (and {len(more)} more problems)" if more else ""
    return InvalidInput(message + extra, field or "request")


def _result_path(arg: str | None) -> Path | None:
    from multitalk.runner.result import RESULT_PATH_ENV, TERMINATION_LOG

    if arg:
        return Path(arg)
    if os.environ.get(RESULT_PATH_ENV):
        return Path(os.environ[RESULT_PATH_ENV])
    return Path(TERMINATION_LOG) if Path(TERMINATION_LOG).exists() else None


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
        self.previous = signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.noted = True

    def arm(self) -> None:
        signal.signal(signal.SIGTERM, _terminated)
        if self.noted:
            _terminated(signal.SIGTERM, None)

    def disarm(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a late SIGTERM must not cost the result

    def release(self) -> None:
        """Not rendering after all (`check`, a usage error): the handler from before, and a SIGTERM
        noted meanwhile is delivered to it now."""
        signal.signal(signal.SIGTERM, self.previous)
        if self.noted:
            os.kill(os.getpid(), signal.SIGTERM)


def _render(args: argparse.Namespace, termination: _Termination, started: float) -> int:
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
        pipeline = Pipeline(
            request, _model_dir(args.model_dir), progress=reporter.update, windows=reporter.windows, started=started
        )
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
        resume=pipeline.resume_report if pipeline is not None else None,
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
    started = time.perf_counter()
    termination = _Termination()  # first, before anything heavy is imported
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"multitalk-runner: error: {exc.message}", file=sys.stderr)
        _write_result(_failure(exc, ExitCode.USAGE, None), _result_path(None))
        termination.release()
        return int(ExitCode.USAGE)
    if args.command == "check":
        termination.release()
        from multitalk.runner.check import check_report

        report = check_report(_model_dir(args.model_dir))
        print(json.dumps(report, indent=2))
        if args.require and not report["engines"][args.require]["available"]:
            reason = report["engines"][args.require]["reason"]
            print(f"multitalk-runner: engine {args.require} is not available: {reason}", file=sys.stderr)
            return int(ExitCode.ENGINE_UNAVAILABLE)
        return int(ExitCode.OK)
    if args.command == "clean-scratch":
        termination.release()  # nothing to unwind: a SIGTERM ends it, the Job retries
        return _clean_scratch(args)
    return _render(args, termination, started)


if __name__ == "__main__":
    sys.exit(main())
