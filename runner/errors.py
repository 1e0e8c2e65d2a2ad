"""Runner failures and their exit codes (the contract the operator's podFailurePolicy reads)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    RETRYABLE = 1  # anything unexpected: the Job may try again
    USAGE = 2  # bad command line
    INVALID_INPUT = 3  # bad or unsupported audio/image/parameters: permanent
    ENGINE_UNAVAILABLE = 4  # requested engine cannot run here: permanent
    STORAGE_REFUSED = 5  # not found, access denied, would overwrite: permanent


PERMANENT_EXIT_CODES = (ExitCode.INVALID_INPUT, ExitCode.ENGINE_UNAVAILABLE, ExitCode.STORAGE_REFUSED)


class RunnerError(Exception):
    """A failure with a documented exit code and the request field it concerns."""

    exit_code: ExitCode = ExitCode.RETRYABLE
    reason: str = "InternalError"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class UsageError(RunnerError):
    exit_code = ExitCode.USAGE
    reason = "Usage"


class InvalidInput(RunnerError):
    exit_code = ExitCode.INVALID_INPUT
    reason = "InvalidInput"


class EngineUnavailable(RunnerError):
    exit_code = ExitCode.ENGINE_UNAVAILABLE
    reason = "EngineUnavailable"


class StorageRefused(RunnerError):
    exit_code = ExitCode.STORAGE_REFUSED
    reason = "StorageRefused"


class Retryable(RunnerError):
    exit_code = ExitCode.RETRYABLE
    reason = "InternalError"


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
