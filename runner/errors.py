"""Runner failures and their exit codes (the contract the operator's podFailurePolicy reads).

Each exit code has one meaning and one reason name; the runner writes the reason into its
result JSON and the operator reports the same name when a runner left no result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    OK = 0
    RETRYABLE = 1  # anything unexpected: the Job may try again
    USAGE = 2  # bad command line
    INVALID_INPUT = 3  # bad or unsupported audio/image/parameters: permanent
    ENGINE_UNAVAILABLE = 4  # requested engine cannot run here: permanent
    STORAGE_REFUSED = 5  # not found, access denied, would overwrite: permanent


class FailureReason(StrEnum):
    RUNNER_ERROR = "RunnerError"
    USAGE = "Usage"
    INVALID_INPUT = "InvalidInput"
    ENGINE_UNAVAILABLE = "EngineUnavailable"
    STORAGE_REFUSED = "StorageRefused"


_REASONS = {
    ExitCode.RETRYABLE: FailureReason.RUNNER_ERROR,
    ExitCode.USAGE: FailureReason.USAGE,
    ExitCode.INVALID_INPUT: FailureReason.INVALID_INPUT,
    ExitCode.ENGINE_UNAVAILABLE: FailureReason.ENGINE_UNAVAILABLE,
    ExitCode.STORAGE_REFUSED: FailureReason.STORAGE_REFUSED,
}
PERMANENT_EXIT_CODES = (ExitCode.INVALID_INPUT, ExitCode.ENGINE_UNAVAILABLE, ExitCode.STORAGE_REFUSED)


def exit_reason(code: ExitCode) -> FailureReason:
    """The reason name of a failed exit (exit 0 is no failure: RunnerError, as for any other)."""
    return _REASONS.get(code, FailureReason.RUNNER_ERROR)


class RunnerError(Exception):
    """A failure with a documented exit code and the request field it concerns."""

    exit_code: ExitCode = ExitCode.RETRYABLE

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def reason(self) -> FailureReason:
        return exit_reason(self.exit_code)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class UsageError(RunnerError):
    exit_code = ExitCode.USAGE


class InvalidInput(RunnerError):
    exit_code = ExitCode.INVALID_INPUT


class EngineUnavailable(RunnerError):
    exit_code = ExitCode.ENGINE_UNAVAILABLE


class StorageRefused(RunnerError):
    exit_code = ExitCode.STORAGE_REFUSED


class Retryable(RunnerError):
    exit_code = ExitCode.RETRYABLE


def cause(exc: BaseException) -> str:
    """What a decoder said about the bytes, for a message: the type and text, without the
    file-object names and error numbers FFmpeg and Pillow add."""
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def decoding(field: str, what: str) -> Iterator[None]:
    """Whatever a decoder (Pillow, PyAV) raises on the user's bytes is InvalidInput naming the
    field: decoders report malformed data with a zoo of exception types (OSError, ValueError,
    struct.error, AttributeError ...), and decoding is deterministic, so a retry cannot help.
    The runner's own errors pass through unchanged: a refusal, and SIGTERM's Retryable."""
    try:
        yield
    except RunnerError:
        raise
    except Exception as exc:
        raise InvalidInput(f"{what}: {cause(exc)}", field) from exc
