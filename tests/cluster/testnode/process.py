"""The kubelet's part: start a pod's container as a local process, run it (restarting it as
the restart policy says), and post its status: Running, then terminated with the exit code
and the termination message."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes.client.rest import ApiException

from cluster.testnode.clock import now
from cluster.testnode.podenv import PodEnvironment, expand, remap

T = TypeVar("T")

TERMINATION_MESSAGE_LIMIT = 4096  # what a kubelet keeps of a termination message
_ip_counter = itertools.count(2)


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    process: subprocess.Popen[bytes] | None = None
    started_at: str = field(default_factory=now)
    killed: bool = False
    deleting: bool = False


class Processes(PodEnvironment):
    """Mixed into TestNode: the pods it runs, its stop event and its hooks."""

    mode: str
    workdir: Path
    exec_log: list[tuple[str, str, int]]
    on_start: Callable[[dict[str, Any]], None] | None
    _running: dict[str, RunningPod]
    _lock: threading.Lock
    _stop: threading.Event

    def pod_log(self, namespace: str, name: str) -> str:
        path = self.workdir / f"{namespace}_{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, namespace: str, name: str, sig: int = signal.SIGKILL) -> bool:
        """Kill a pod's container process (a crash; the restart policy decides what follows)."""
        with self._lock:
            found = [r for r in self._running.values() if (r.namespace, r.name) == (namespace, name)]
        for running in found:
            if running.process and running.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, sig)
                return True
        return False

    def _patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        """Post pod status; like a kubelet's status manager, keep trying while the API server is away."""
        meta = pod["metadata"]
        self._retrying(
            lambda: self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
        )

    def _retrying(self, call: Callable[[], T], patience: float = 120.0) -> T:
        """``call()``, again while the API server is unreachable or answers 5xx/429."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return call()
            except ApiException as error:
                if error.status == 404 or (error.status < 500 and error.status != 429):
                    raise
                reason: Exception = error
            except Exception as error:  # connection refused while the API server restarts
                reason = error
            if time.monotonic() > deadline or self._stop.is_set():
                raise reason
            self._stop.wait(0.5)

    def _start_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]
        running = RunningPod(meta["uid"], meta["namespace"], meta["name"])
        with self._lock:
            self._running[meta["uid"]] = running
        if self.on_start is not None:
            self.on_start(pod)
        serial = next(_ip_counter)
        ip = f"10.244.{serial // 250}.{serial % 250 + 2}"
        base = {
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": running.started_at,
        }
        if self.mode == "noop":
            message = json.dumps({"ok": True, "exitCode": 0, "engine": {"requested": "auto", "name": "noop"}})
            self._post_terminated(pod, running, 0, message, extra=base)
            return
        ready = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": running.started_at},
            {"type": "Initialized", "status": "True", "lastTransitionTime": running.started_at},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": running.started_at},
            {"type": "Ready", "status": "True", "lastTransitionTime": running.started_at},
        ]
        self._patch_status(
            pod,
            {
                **base,
                "phase": "Running",
                "conditions": ready,
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container.get("image", ""),
                        "imageID": "",
                        "containerID": f"local://{meta['uid']}",
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": running.started_at}},
                    }
                ],
            },
        )
        policy = pod["spec"].get("restartPolicy", "Always")
        restarts = 0
        while True:
            try:
                code, message = self._run(pod, running)
            except Exception as error:  # could not start the process: what a kubelet reports as a failed start
                code, message = 128, f"test node could not start the container: {error}"
            if self._stop.is_set() or running.deleting or policy == "Never" or (policy == "OnFailure" and code == 0):
                break
            # Restart in place like a kubelet (CrashLoopBackOff, with a shorter back-off).
            restarts += 1
            last = {"exitCode": code, "reason": "Error" if code else "Completed", "startedAt": running.started_at}
            last["finishedAt"] = now()
            self._stop.wait(min(0.5 * 2 ** (restarts - 1), 5))
            running.started_at = now()
            self._patch_status(
                pod,
                {
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container.get("image", ""),
                            "imageID": "",
                            "containerID": f"local://{meta['uid']}/{restarts}",
                            "ready": True,
                            "started": True,
                            "restartCount": restarts,
                            "state": {"running": {"startedAt": running.started_at}},
                            "lastState": {"terminated": last},
                        }
                    ]
                },
            )
        if running.deleting:
            return  # the deletion posts nothing more: the object goes away
        self._post_terminated(pod, running, code, message, extra=base)

    def _post_terminated(
        self, pod: dict[str, Any], running: RunningPod, code: int, message: str, extra: dict[str, Any]
    ) -> None:
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]
        finished = now()
        self.exec_log.append((f"{meta['namespace']}/{meta['name']}", meta["uid"], code))
        done = {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished}
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else ("OOMKilled" if code == 137 and running.killed else "Error"),
            "startedAt": running.started_at,
            "finishedAt": finished,
            "containerID": f"local://{meta['uid']}",
        }
        if message:
            terminated["message"] = message
        self._patch_status(
            pod,
            {
                **extra,
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": running.started_at},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": running.started_at},
                    {**done, "type": "ContainersReady"},
                    done,
                ],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container.get("image", ""),
                        "imageID": "",
                        "containerID": f"local://{meta['uid']}",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            },
        )
        with self._lock:
            self._running.pop(meta["uid"], None)

    def _run(self, pod: dict[str, Any], running: RunningPod) -> tuple[int, str]:
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]
        root = self.workdir / meta["uid"]
        mounts: dict[str, Path] = {"__home__": root / "home"}
        for mount in container.get("volumeMounts") or []:
            mounts[mount["mountPath"]] = root / "volumes" / mount["name"]
        for path in mounts.values():
            path.mkdir(parents=True, exist_ok=True)
        termination_path = container.get("terminationMessagePath") or "/dev/termination-log"
        result_file = root / "termination-log"
        result_file.touch()
        mounts[termination_path] = result_file
        env = self._retrying(lambda: self._environment(pod, container, mounts))
        env.setdefault("TMPDIR", str(root / "home"))
        argv = [expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
        if not argv:
            return 128, "test node: the container has no command (image entrypoints are not known here)"
        argv = [remap(a, mounts) for a in argv]
        executable = shutil.which(argv[0], path=env["PATH"])
        if executable is None:
            return 127, f"test node: executable {argv[0]!r} not found"
        cwd = remap(container["workingDir"], mounts) if container.get("workingDir") else str(root / "home")
        with (self.workdir / f"{meta['namespace']}_{meta['name']}.log").open("ab") as out:
            process = subprocess.Popen(
                [executable, *argv[1:]], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        running.process = process
        code = process.wait()
        if code < 0:  # killed by a signal: what a container runtime reports
            code = 128 - code
        message = result_file.read_text(errors="replace")[:TERMINATION_MESSAGE_LIMIT]
        if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = self.pod_log(meta["namespace"], meta["name"]).splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        return code, message
