"""Helpers for API-level operator tests: the operator as a process against KMock, waiting, paths."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from kmock_cluster import TV

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_kubeconfig(path: Path, url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester", "namespace": "media"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


class OperatorProcess:
    """`python -m multitalk.operator.main` against the emulator; killable and restartable."""

    def __init__(self, kubeconfig: Path, log_dir: Path, env: dict[str, str]) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra_env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0
        self.metrics_port = free_port()
        self.health_port = free_port()

    async def start(self) -> None:
        self.runs += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "MULTITALK_METRICS_PORT": str(self.metrics_port),
            "MULTITALK_HEALTH_PORT": str(self.health_port),
            "MULTITALK_RESYNC_SECONDS": "1",
            "MULTITALK_PROGRESS_POLL_SECONDS": "0.5",
            "MULTITALK_RUNNER_IMAGE": "registry.example/multitalk-runner:test",
            **self.extra_env,
        }
        log = open(self.log_dir / f"operator-{self.runs}.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "multitalk.operator.main", env=env, stdout=log, stderr=log, cwd=ROOT
        )

    async def kill(self) -> None:
        """SIGKILL: no graceful shutdown, like a node dying under the operator."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                await self.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))


async def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def tv_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{TV.rsplit('/', 1)[0]}/namespaces/{namespace}/{TV.rsplit('/', 1)[1]}"
    return f"{base}/{name}" if name else base


MERGE = {"Content-Type": "application/merge-patch+json"}
