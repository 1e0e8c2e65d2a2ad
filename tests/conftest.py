"""Options shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

# Property tests: the same examples on every run (a red CI is a real, reproducible failure);
# HYPOTHESIS_PROFILE=explore draws new ones. Failing examples are kept under build/.
_EXAMPLES = DirectoryBasedExampleDatabase(str(Path(__file__).resolve().parents[1] / "build" / "hypothesis"))
settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", database=_EXAMPLES, deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=None,
        help="run the cluster tests against this cluster instead of a loopback control plane "
        "(also MULTITALK_TEST_KUBECONFIG)",
    )
