"""Options shared by the whole suite."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=None,
        help="run the cluster tests against this cluster instead of a loopback control plane "
        "(also MULTITALK_TEST_KUBECONFIG)",
    )
