"""Fixtures for the runner tests (defined in runner_support so test modules can import helpers)."""

from runner_support import media, s3

__all__ = ["media", "s3"]
