"""The node's lifecycle: the Node object and its heartbeats, the pod watch, the reconcile loop
that hands each pod to the scheduler's or the kubelet's part, and finishing deletions."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from cluster.testnode.clock import now, now_micro
from cluster.testnode.container import Runtime
from cluster.testnode.process import Processes, RunningPod
from cluster.testnode.scheduling import Scheduling, gpu_request

log = logging.getLogger("testnode")
RUNTIME_ENV = "MULTITALK_TEST_NODE_RUNTIME"  # auto (default), image or process: container.Runtime


class TestNode(Scheduling, Processes):
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
        runtime: Runtime | str | None = None,
    ) -> None:
        if mode not in ("run", "noop"):
            raise ValueError(f"mode must be run or noop, not {mode!r}")
        chosen = runtime or os.environ.get(RUNTIME_ENV) or Runtime.AUTO
        if chosen not in tuple(Runtime):
            raise ValueError(f"{RUNTIME_ENV} must be one of {', '.join(Runtime)}, not {chosen!r}")
        self.runtime = Runtime(chosen)
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
        # Deletions apart: a start holds its worker while the container runs, so with every
        # worker held a deletion queued behind them waited for a render to end (and publish).
        self._deletions = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-delete")
        self._threads: list[threading.Thread] = []
        self.exec_log: list[tuple[str, str, int]] = []  # (namespace/pod, uid, exit code) of each run
        self.started: list[tuple[str, str | None]] = []  # (namespace/pod, image or None: a local process) of each run
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
            with pod.lock:  # a start in flight either finishes first (and is killed) or sees _stop
                pass
            if pod.process and pod.process.poll() is None:
                pod.killed = True
                if pod.container:
                    self._signal(pod, signal.SIGKILL)
                else:
                    pod.process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._deletions.shutdown(wait=True, cancel_futures=True)
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

    def adopt(self, namespace: str) -> None:
        """Also play the node for the pods of ``namespace``."""
        if self.namespaces is not None:
            self.namespaces.add(namespace)
            self._wake.set()

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
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": lease_name, "namespace": lease_ns},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
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

    # --- the reconcile loop ----------------------------------------------------------------
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

        (self._deletions if key[0] == "delete" else self._pool).submit(run)

    def _finish_deletion(self, pod: dict[str, Any]) -> None:
        """What a kubelet does for a pod being deleted: stop its container within the grace
        period, post its final state (the Job controller waits for a final phase before it
        counts the attempt and makes the next pod), then remove the object."""
        meta = pod["metadata"]
        grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30) or 0)
        with self._lock:
            running = self._running.get(meta["uid"])
        if running is not None:
            with running.lock:  # from here on no container starts for it (process._spawn)
                running.deleting = True
            self._terminate(running, grace)
            # The pod's own thread posts the terminated state once the container is gone.
            if not running.final_posted.wait(timeout=min(grace, 30) + 35):
                log.warning("no final state posted for deleted pod %s", meta["name"])
        elif pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            self._post_never_started(pod)
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
