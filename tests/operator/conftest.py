"""Fixtures for API-level operator tests: KMock's emulator over HTTP + the real operator process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest_asyncio
from kmock_cluster import Cluster
from kmock_harness import OperatorProcess, write_kubeconfig


@pytest_asyncio.fixture()
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as emulator, kmock.Server(emulator):
        yield emulator


@pytest_asyncio.fixture()
async def operator(cluster: Cluster, tmp_path: Path) -> AsyncIterator[OperatorProcess]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(cluster.url).rstrip("/"))
    process = OperatorProcess(kubeconfig, tmp_path, {})
    try:
        yield process
    finally:
        await process.stop()
        print(process.logs()[-6000:])  # shown by pytest when a test fails
