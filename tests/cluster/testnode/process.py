"""The kubelet's part: start a pod's container, run it (restarting it as the restart policy
says), and post its status: Running, then terminated with the exit code and the termination
message.

The container runs from the image named in the pod spec with podman when the node's runtime
says so (container.Runtime; by default whenever that image is in local storage), else its
command runs as a local process from this virtualenv."""

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

from cluster import images
from cluster.testnode.clock import now
from cluster.testnode.container import SERVICE_ACCOUNT_PATH, Mount, Runtime, podman_run_args, refusal
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
    container: str | None = None  # the podman container's name when it runs from an image
    started_at: str = field(default_factory=now)
    killed: bool = False
    deleting: bool = False  # set under `lock`: no container starts once it is
    runs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    final_posted: threading.Event = field(default_factory=threading.Event)  # the terminated state is out


class PodDeleting(Exception):
    """The pod's deletion began before its container started: a kubelet never starts it."""


class Processes(PodEnvironment):
    """Mixed into TestNode: the pods it runs, its stop event and its hooks."""

    mode: str
    runtime: Runtime
    workdir: Path
    exec_log: list[tuple[str, str, int]]
    started: list[tuple[str, str | None]]
    on_start: Callable[[dict[str, Any]], None] | None
    _running: dict[str, RunningPod]
    _pods: dict[str, dict[str, Any]]
    _lock: threading.Lock
    _stop: threading.Event

    def pod_log(self, namespace: str, name: str) -> str:
        path = self.workdir / f"{namespace}_{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def container_running(self, uid: str) -> bool:
        """Has the pod's container process started, and not ended?"""
        with self._lock:
            running = self._running.get(uid)
        return running is not None and running.process is not None and running.process.poll() is None

    def deletion_begun(self, uid: str) -> bool:
        """Has the node begun stopping this pod (no container starts for it from here on)?"""
        with self._lock:
            running = self._running.get(uid)
        return running is not None and running.deleting

    def kill(self, namespace: str, name: str, sig: int = signal.SIGKILL) -> bool:
        """Kill a pod's container process (a crash; the restart policy decides what follows)."""
        with self._lock:
            found = [r for r in self._running.values() if (r.namespace, r.name) == (namespace, name)]
        for running in found:
            if running.process and running.process.poll() is None:
                self._signal(running, sig)
                return True
        return False

    def _signal(self, running: RunningPod, sig: int) -> None:
        if running.container is not None:  # the podman client only attaches: signal the container
            subprocess.run(
                [*images.podman_command(), "kill", "--signal", str(int(sig)), running.container],
                capture_output=True,
                check=False,
            )
        elif running.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, sig)

    def _terminate(self, running: RunningPod, grace: int) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (at most 30), as a kubelet stops a container."""
        if running.process is None or running.process.poll() is not None:
            return
        running.killed = True
        self._signal(running, signal.SIGTERM)
        try:
            running.process.wait(timeout=min(grace, 30))
        except subprocess.TimeoutExpired:
            self._signal(running, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=30)

    def _uses_image(self, image: str) -> bool:
        if self.mode == "noop" or self.runtime == Runtime.PROCESS or not image:
            return False
        return self.runtime == Runtime.IMAGE or images.image_exists(image)

    def _cannot_start(self, pod: dict[str, Any], image: str) -> tuple[str, str] | None:
        """(reason, message) of a kubelet's waiting state when the container cannot start."""
        if not self._uses_image(image):
            return None
        if not images.image_exists(image):
            return (
                "ErrImageNeverPull",
                f'Container image "{image}" is not present on the test node: {images.BUILD_HINT}',
            )
        why = refusal(pod, pod["spec"]["containers"][0], images.image_user(image))
        return ("CreateContainerConfigError", why) if why else None

    def _post_waiting(self, pod: dict[str, Any], reason: str, message: str) -> None:
        container = pod["spec"]["containers"][0]
        waiting = {"reason": reason, "message": message}
        status = {"name": container["name"], "image": container.get("image", ""), "imageID": "", "ready": False}
        self._patch_status(
            pod, {"containerStatuses": [{**status, "restartCount": 0, "started": False, "state": {"waiting": waiting}}]}
        )

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

    def _spawn(
        self, running: RunningPod, start: Callable[[], subprocess.Popen[bytes]], image: str | None
    ) -> subprocess.Popen[bytes]:
        """Start the container unless the pod is being deleted (checked under the pod's lock,
        which the deletion takes to set `deleting`: either the deletion sees the process and
        stops it, or no process starts)."""
        with running.lock:
            if running.deleting or self._stop.is_set():  # a node stopping starts nothing either
                raise PodDeleting(running.name)
            running.process = start()
        self.started.append((f"{running.namespace}/{running.name}", image))
        return running.process

    def _start_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]
        running = RunningPod(meta["uid"], meta["namespace"], meta["name"])
        with self._lock:
            latest = self._pods.get(meta["uid"], pod)
            if latest["metadata"].get("deletionTimestamp"):
                return  # deleted since this start was dispatched: the deletion finishes it
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
        blocked = self._cannot_start(pod, container.get("image", ""))
        if blocked is not None:  # the pod stays Pending, as with a kubelet
            with self._lock:
                self._running.pop(meta["uid"], None)
            self._post_waiting(pod, *blocked)
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
            except PodDeleting:
                self._post_never_started(pod)
                running.final_posted.set()
                with self._lock:
                    self._running.pop(meta["uid"], None)
                return
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
        # Also for a pod being deleted: its Job counts the attempt only once its pod has a
        # final phase (the pod failure policy waits for one); the deletion waits for this post.
        self._post_terminated(pod, running, code, message, extra=base)

    def _post_never_started(self, pod: dict[str, Any]) -> None:
        """A pod deleted before its container ran: Failed, as a kubelet reports it."""
        container = pod["spec"]["containers"][0]
        unknown = {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
        }
        self._patch_status(
            pod,
            {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {"terminated": unknown},
                    }
                ],
            },
        )

    def _post_terminated(
        self, pod: dict[str, Any], running: RunningPod, code: int, message: str, extra: dict[str, Any]
    ) -> None:
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]
        finished = now()
        self.exec_log.append((f"{meta['namespace']}/{meta['name']}", meta["uid"], code))
        done = {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished}
        oom = code == 137 and running.killed and not running.deleting
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else ("OOMKilled" if oom else "Error"),
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
        running.final_posted.set()
        with self._lock:
            self._running.pop(meta["uid"], None)

    def _run(self, pod: dict[str, Any], running: RunningPod) -> tuple[int, str]:
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]
        running.runs += 1
        image = container.get("image", "")
        uses_image = self._uses_image(image)
        if uses_image:
            return self._run_image(pod, running, image)
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
        self._launch(running, meta, [executable, *argv[1:]], env, None, cwd)
        return self._wait(pod, running, result_file)

    def _run_image(self, pod: dict[str, Any], running: RunningPod, image: str) -> tuple[int, str]:
        """The container from its image with podman: the pod's user, mounts and environment."""
        meta = pod["metadata"]
        container = dict(pod["spec"]["containers"][0])
        root = self.workdir / meta["uid"]
        mounts: dict[str, Mount] = {}
        for mount in container.get("volumeMounts") or []:
            host = root / "volumes" / mount["name"]
            host.mkdir(parents=True, exist_ok=True)
            host.chmod(0o777)  # an emptyDir is world-writable
            mounts[mount["mountPath"]] = Mount(host, bool(mount.get("readOnly")))
        root.mkdir(parents=True, exist_ok=True)
        result_file = root / "termination-log"
        result_file.write_bytes(b"")  # each run starts with an empty message
        result_file.chmod(0o666)  # as a kubelet makes it: writable by any container user
        mounts[container.get("terminationMessagePath") or "/dev/termination-log"] = Mount(result_file)
        env = self._retrying(lambda: self._pod_env(pod, container))
        if pod["spec"].get("automountServiceAccountToken", True):
            account = root / "serviceaccount"
            service = self._retrying(lambda: self._service_account_files(pod, account))
            env = {**service, **env}
            mounts[SERVICE_ACCOUNT_PATH] = Mount(account, read_only=True)
        for key in ("command", "args"):
            if container.get(key):
                container[key] = [expand(a, env) for a in container[key]]
        # Values reach podman through its environment (`--env NAME`), off the command line,
        # except those that would change podman's own environment.
        inline = {k: v for k, v in env.items() if k in os.environ}
        named = {k: v for k, v in env.items() if k not in inline}
        running.container = f"testnode-{meta['uid'][:13]}-{running.runs}"
        args = podman_run_args(
            {**pod, "spec": {**pod["spec"], "containers": [container]}},
            container,
            image=image,
            name=running.container,
            mounts=mounts,
            env_names=sorted(named),
            env_values=inline,
        )
        podman = [*images.podman_command(), "run", *images.limit_options(), *args]
        self._launch(running, meta, podman, {**os.environ, **named}, image)
        return self._wait(pod, running, result_file)

    def _launch(
        self,
        running: RunningPod,
        meta: dict[str, Any],
        argv: list[str],
        env: dict[str, str],
        image: str | None,
        cwd: str | None = None,
    ) -> None:
        """Start the container's process in its own session, its output appended to the pod's log."""
        with (self.workdir / f"{meta['namespace']}_{meta['name']}.log").open("ab") as out:
            self._spawn(
                running,
                lambda: subprocess.Popen(
                    argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                ),
                image,
            )

    def _wait(self, pod: dict[str, Any], running: RunningPod, result_file: Path) -> tuple[int, str]:
        """The exit code and termination message once the container ends."""
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]
        assert running.process is not None
        code = running.process.wait()
        if code < 0:  # killed by a signal: what a container runtime reports
            code = 128 - code
        message = result_file.read_text(errors="replace")[:TERMINATION_MESSAGE_LIMIT]
        if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = self.pod_log(meta["namespace"], meta["name"]).splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        return code, message
