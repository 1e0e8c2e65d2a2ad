"""A test node: plays scheduler and kubelet for one Node, running containers as local processes.

No kubelet can run containers here, so this helper registers a Node with `nvidia.com/gpu`
capacity, binds pending pods that fit it (nodeSelector and GPU count; no scheduling gates),
runs the container's command with the pod's environment as a local process (the runner
from the virtualenv), and posts pod status the way a kubelet does: Running, then
terminated with the exit code and the termination message read from the result file.

Mode "noop" completes every bound pod at once with exit code 0 (scale benchmark).

What it does not do (documented limits): init/sidecar containers, probes, images, real
volume mounts (a mount path found at the start of an env value or argument is rewritten
to a per-pod local folder), affinity and tolerations (the node has no taints).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("testnode")
T = TypeVar("T")

TERMINATION_MESSAGE_LIMIT = 4096  # what a kubelet keeps of a termination message
VENV_BIN = Path(sys.executable).parent
_ip_counter = itertools.count(2)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(value: str | int | None) -> int:
    """Integer count of an extended resource such as nvidia.com/gpu."""
    return int(str(value)) if value not in (None, "") else 0


def gpu_request(pod: dict[str, Any]) -> int:
    total = 0
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        want = (resources.get("limits") or {}).get("nvidia.com/gpu") or (resources.get("requests") or {}).get(
            "nvidia.com/gpu"
        )
        total += _quantity(want)
    return total


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown stay."""

    def swap(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", swap, text)


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    process: subprocess.Popen[bytes] | None = None
    started_at: str = field(default_factory=now)
    killed: bool = False
    deleting: bool = False


class TestNode:
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        api: client.ApiClient,
        name: str = "gpu-node-1",
        *,
        gpus: int = 1,
        mode: str = "run",
        labels: dict[str, str] | None = None,
        namespace: str | None = None,
        namespaces: set[str] | None = None,
        max_pods: int = 110,
        workers: int = 8,
    ) -> None:
        if mode not in ("run", "noop"):
            raise ValueError(f"mode must be run or noop, not {mode!r}")
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.name = name
        self.gpus = gpus
        self.mode = mode
        self.labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "nvidia.com/gpu.present": "true",
            **(labels or {}),
        }
        # Pods of these namespaces only (None: every namespace); `adopt` adds one.
        self.namespaces: set[str] | None = {namespace} if namespace else namespaces
        self.max_pods = max_pods
        self.workdir = Path(tempfile.mkdtemp(prefix=f"testnode-{name}-"))
        self._pods: dict[str, dict[str, Any]] = {}  # uid -> latest pod object (raw JSON)
        self._handled: set[str] = set()  # uids whose start or finish has been dispatched
        self._running: dict[str, RunningPod] = {}
        self._unschedulable_reported: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-pod")
        self._threads: list[threading.Thread] = []
        self.exec_log: list[tuple[str, str, int]] = []  # (namespace/pod, uid, exit code) of each run
        self.on_start: Callable[[dict[str, Any]], None] | None = None  # hook for fault tests

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> TestNode:
        self._register()
        for target in (self._heartbeat, self._watch, self._reconcile_loop):
            thread = threading.Thread(target=target, name=f"{self.name}-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, delete_node: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        for pod in running:
            if pod.process and pod.process.poll() is None:
                pod.killed = True
                pod.process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            if not thread.name.endswith("_watch"):  # the watch ends at its next event or timeout
                thread.join(timeout=10)
        if delete_node:
            with contextlib.suppress(ApiException):
                self.core.delete_node(self.name)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TestNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pod_log(self, namespace: str, name: str) -> str:
        path = self.workdir / f"{namespace}_{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- node object and heartbeats ------------------------------------------------------
    def _capacity(self) -> dict[str, str]:
        return {"cpu": "16", "memory": "64Gi", "pods": str(self.max_pods), "nvidia.com/gpu": str(self.gpus)}

    def _ready_condition(self) -> dict[str, Any]:
        stamp = now()
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "test node is posting ready status",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }

    def _register(self) -> None:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": self.labels}}
        try:
            self.core.create_node(body)
        except ApiException as error:
            if error.status != 409:
                raise
            self.core.patch_node(self.name, {"metadata": {"labels": self.labels}})
        self.core.patch_node_status(
            self.name,
            {
                "status": {
                    "capacity": self._capacity(),
                    "allocatable": self._capacity(),
                    "conditions": [self._ready_condition()],
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": self.name},
                    ],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "kubeletVersion": "testnode",
                        "kubeProxyVersion": "",
                        "containerRuntimeVersion": "local-process://1",
                        "osImage": "test node",
                        "kernelVersion": os.uname().release,
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                    },
                }
            },
        )

    def _heartbeat(self) -> None:
        """Renew the node lease and Ready condition so the node lifecycle controller keeps
        the node Ready (it taints and evicts from nodes that stop reporting)."""
        lease_name, lease_ns = self.name, "kube-node-lease"
        while not self._stop.is_set():
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": lease_name, "namespace": lease_ns},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": stamp},
            }
            try:
                try:
                    self.coordination.patch_namespaced_lease(lease_name, lease_ns, lease)
                except ApiException as error:
                    if error.status != 404:
                        raise
                    self.coordination.create_namespaced_lease(lease_ns, lease)
                self.core.patch_node_status(self.name, {"status": {"conditions": [self._ready_condition()]}})
            except Exception as error:  # the API server may be restarting: try again next beat
                log.info("heartbeat failed: %s", error)
            self._stop.wait(10)

    # --- watching pods -------------------------------------------------------------------
    def _list(self) -> tuple[list[dict[str, Any]], str]:
        reply = self.core.list_pod_for_all_namespaces(_preload_content=False)
        data = json.loads(reply.data)
        return data["items"], data["metadata"]["resourceVersion"]

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                items, version = self._list()
                with self._lock:
                    self._pods = {pod["metadata"]["uid"]: pod for pod in items}
                self._wake.set()
                stream = watch.Watch()
                func = self.core.list_pod_for_all_namespaces
                for event in stream.stream(func, resource_version=version, timeout_seconds=10):
                    if self._stop.is_set():
                        stream.stop()
                        break
                    pod = event["raw_object"]
                    if event["type"] == "ERROR":
                        break  # expired resource version: list again
                    uid = pod["metadata"]["uid"]
                    with self._lock:
                        if event["type"] == "DELETED":
                            self._pods.pop(uid, None)
                        else:
                            self._pods[uid] = pod
                    self._wake.set()
            except Exception as error:  # API server restarts, expired watches: list again
                log.info("pod watch restarts: %s", error)
                self._stop.wait(0.5)

    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)  # a periodic pass also retries pods waiting for a GPU
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._reconcile()
            except Exception:
                log.exception("test node pass failed")

    def adopt(self, namespace: str) -> None:
        """Also play the node for the pods of ``namespace``."""
        if self.namespaces is not None:
            self.namespaces.add(namespace)
            self._wake.set()

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

    def _reconcile(self) -> None:
        with self._lock:
            pods = list(self._pods.values())
        if self.namespaces is not None:
            pods = [p for p in pods if p["metadata"]["namespace"] in self.namespaces]
        mine = [p for p in pods if p["spec"].get("nodeName") == self.name]
        used = sum(gpu_request(p) for p in mine if p.get("status", {}).get("phase") not in ("Succeeded", "Failed"))
        count = len([p for p in mine if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")])
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            meta, spec = pod["metadata"], pod["spec"]
            uid = meta["uid"]
            if spec.get("nodeName") == self.name:
                if meta.get("deletionTimestamp"):
                    self._dispatch(("delete", uid), self._finish_deletion, pod)
                elif pod.get("status", {}).get("phase", "Pending") == "Pending":
                    self._dispatch(("start", uid), self._start_pod, pod)
            elif not spec.get("nodeName") and not meta.get("deletionTimestamp"):
                if spec.get("schedulingGates"):
                    continue  # Kueue (or another gate holder) has not released it yet
                reason = self._misfit(pod, used, count)
                if reason is None:
                    used += gpu_request(pod)
                    count += 1
                    self._dispatch(("bind", uid), self._bind, pod)
                elif uid not in self._unschedulable_reported:
                    self._unschedulable_reported.add(uid)
                    self._dispatch(("unschedulable", uid), self._report_unschedulable, pod, reason)

    def _dispatch(self, key: tuple[str, str], action: Callable[..., None], *args: Any) -> None:
        marker = f"{key[0]}:{key[1]}"
        with self._lock:
            if marker in self._handled:
                return
            self._handled.add(marker)

        def run() -> None:
            try:
                action(*args)
            except Exception:
                log.exception("%s of pod %s failed", key[0], args[0]["metadata"]["name"])
                with self._lock:  # let a later pass try again (e.g. the API server was down)
                    self._handled.discard(marker)
                self._wake.set()

        self._pool.submit(run)

    def _misfit(self, pod: dict[str, Any], used_gpus: int, pod_count: int) -> str | None:
        selector = pod["spec"].get("nodeSelector") or {}
        if any(self.labels.get(k) != v for k, v in selector.items()):
            return "node(s) didn't match Pod's node affinity/selector"
        if gpu_request(pod) > self.gpus - used_gpus:
            return "Insufficient nvidia.com/gpu"
        if pod_count >= self.max_pods:
            return "Too many pods"
        return None

    # --- the scheduler's part ------------------------------------------------------------
    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=meta["name"], uid=meta["uid"]),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.name),
        )
        try:
            self.core.create_namespaced_pod_binding(meta["name"], meta["namespace"], body, _preload_content=False)
        except ApiException as error:
            if error.status not in (404, 409):  # gone, or bound already
                raise

    def _report_unschedulable(self, pod: dict[str, Any], reason: str) -> None:
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": f"0/1 nodes are available: 1 {reason}.",
            "lastTransitionTime": now(),
        }
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": {"conditions": [condition]}}
            )

    # --- the kubelet's part --------------------------------------------------------------
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

    def _environment(self, pod: dict[str, Any], container: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
        meta = pod["metadata"]
        namespace = meta["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                data = self._secret(namespace, source["secretRef"]["name"])
            else:
                data = self._config_map(namespace, source["configMapRef"]["name"])
            env.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand(item.get("value", ""), env)
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = self._secret(namespace, ref["name"]).get(ref["key"])
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                value = self._config_map(namespace, ref["name"]).get(ref["key"])
            elif "fieldRef" in source:
                value = _field(pod, source["fieldRef"]["fieldPath"])
            else:  # resourceFieldRef: not modelled
                value = ""
            if value is not None:
                env[name] = value
        # Container paths of volume mounts live in per-pod local folders here.
        env = {k: _remap(v, mounts) for k, v in env.items()}
        if pod["spec"].get("automountServiceAccountToken", True):
            # A kubelet mounts a bound service-account token; here the process gets a
            # kubeconfig with that token (in-cluster loaders read fixed paths).
            env.setdefault("KUBECONFIG", str(self._service_account_kubeconfig(pod, mounts["__home__"])))
        base = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(mounts.get("__home__", self.workdir)),
            "HOSTNAME": meta["name"],
            "LANG": "C.UTF-8",
        }
        return {**base, **env}

    def _service_account_kubeconfig(self, pod: dict[str, Any], directory: Path) -> Path:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        bound = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}
        request = {"spec": {"audiences": [], "expirationSeconds": 3600, "boundObjectRef": bound}}
        token = self.core.create_namespaced_service_account_token(account, meta["namespace"], request).status.token
        configuration = self.core.api_client.configuration
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "in-cluster",
                    "cluster": {"server": configuration.host, "certificate-authority": configuration.ssl_ca_cert},
                }
            ],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "in-cluster",
                    "context": {"cluster": "in-cluster", "user": account, "namespace": meta["namespace"]},
                }
            ],
            "current-context": "in-cluster",
        }
        path = directory / "serviceaccount.kubeconfig"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        import base64

        secret = self.core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def _config_map(self, namespace: str, name: str) -> dict[str, str]:
        return dict(self.core.read_namespaced_config_map(name, namespace).data or {})

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
        argv = [_remap(a, mounts) for a in argv]
        executable = shutil.which(argv[0], path=env["PATH"])
        if executable is None:
            return 127, f"test node: executable {argv[0]!r} not found"
        cwd = _remap(container["workingDir"], mounts) if container.get("workingDir") else str(root / "home")
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

    def _finish_deletion(self, pod: dict[str, Any]) -> None:
        """What a kubelet does for a pod being deleted: stop its container, then remove the object."""
        meta = pod["metadata"]
        with self._lock:
            running = self._running.get(meta["uid"])
        if running is not None:
            running.deleting = True
        if running and running.process and running.process.poll() is None:
            running.killed = True
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30) or 0)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, signal.SIGTERM)
            try:
                running.process.wait(timeout=min(grace, 30))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, signal.SIGKILL)
        with self._lock:
            self._running.pop(meta["uid"], None)
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
                ),
                _preload_content=False,
            )


def _field(pod: dict[str, Any], path: str) -> str | None:
    meta = pod["metadata"]
    simple: dict[str, str | None] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": (pod.get("status") or {}).get("podIP", ""),
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    return None


def _remap(value: str, mounts: dict[str, Path]) -> str:
    for container_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if container_path.startswith("/") and (value == container_path or value.startswith(container_path + "/")):
            return str(local) + value[len(container_path) :]
    return value
