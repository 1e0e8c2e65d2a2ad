"""Scale benchmark on a real API server: N TalkingVideos applied at once.

A loopback control plane (etcd + kube-apiserver + kube-controller-manager, audit log on),
the chart installed with the Helm library, the operator pod run by a test node, and a
second test node in no-op mode that completes every runner pod at once. Prints: time
until all Jobs exist and until all TalkingVideos are Complete, the delay between each
Job completing and its TalkingVideo reading Complete, API requests per object made by
the operator (from the audit log), and the operator's CPU seconds and peak RSS.

The operator runs as its image runs it: from a virtualenv holding requirements/operator.txt
and the package (Dockerfile.operator's steps, cached in ~/.cache/multitalk-operator), not
from the test environment, whose extra packages (the kubernetes client: ~45 MiB once kopf
imports it) the image does not have. `--operator-env dev` runs it from this interpreter's venv.

    .venv/bin/python benchmarks/cluster_scale.py [--count 1000] [--operator-env image|dev]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster import install
from cluster.controlplane import ControlPlane, ensure_binaries
from cluster.session import Cluster, api_client
from cluster.talkingvideos import GROUP, PLURAL, VERSION, talking_video
from cluster.testnode import TestNode
from cluster.testnode.container import Runtime
from kubernetes import client

NAMESPACE = "bench"
ROOT = Path(__file__).resolve().parents[1]


def operator_venv() -> Path:
    """A virtualenv like the operator image's: the lock file, then the package without deps."""
    lock = ROOT / "requirements" / "operator.txt"
    # In the user's cache, not the checkout: the chart mounts an emptyDir at /tmp, and the test
    # node maps a pod's paths under its mounts to the pod's own folders, so in a checkout under
    # /tmp the operator's PATH led nowhere (exit 127 at every start).
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "multitalk-operator"
    venv = cache / "bench" / f"operator-{hashlib.sha256(lock.read_bytes()).hexdigest()[:12]}"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not (venv / ".locked").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([*pip, "-r", str(lock)], check=True, cwd="/")
        (venv / ".locked").touch()
    # The package as it is now (a regular install, as the image's `pip install --no-deps .`).
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(ROOT)], check=True, cwd="/")
    return venv


def operator_pid(node: TestNode, pod: dict[str, Any], timeout: float = 60) -> int:
    """The operator's process on the system node (its pod can read Running a moment before)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [r.process.pid for r in node._running.values() if r.process is not None]
        if pids:
            return pids[0]
        time.sleep(0.1)
    meta = pod["metadata"]
    raise RuntimeError(
        f"the operator pod runs, but no operator process started on the test node; runs: {node.exec_log}; "
        f"its log:\n{node.pod_log(meta['namespace'], meta['name'])[-4000:]}"
    )


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cpu, peak


def stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def condition_time(obj: dict[str, Any], kind: str) -> float | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return stamp(cond["lastTransitionTime"])
    return None


def list_raw(call: Any, *args: Any) -> list[dict[str, Any]]:
    return list(json.loads(call(*args, _preload_content=False).data)["items"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="TalkingVideos to apply at once")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument(
        "--operator-env", choices=["image", "dev"], default="image", help="the operator's virtualenv (see above)"
    )
    args = parser.parse_args()
    extra_env = []
    if args.operator_env == "image":
        path = f"{operator_venv() / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        extra_env.append({"name": "PATH", "value": path})

    plane = ControlPlane(ensure_binaries(), audit_log=True)
    plane.start()
    api = api_client(plane.kubeconfig_path)
    cluster = Cluster(plane.kubeconfig_path, api, plane)
    # The operator as a local process (from the image's venv above), so its CPU and RSS are its own.
    system = TestNode(api, "system-node", gpus=0, namespaces=set(), runtime=Runtime.PROCESS).start()
    gpus = TestNode(
        api, "noop-gpu-node", gpus=args.count, mode="noop", namespaces={NAMESPACE}, max_pods=args.count + 10
    )
    gpus.start()
    try:
        values = install.chart_values("http://127.0.0.1:9", secret_name="", operator={"extraEnv": extra_env})
        install.install(cluster, values)
        operator = install.wait_operator_running(cluster, system)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        time.sleep(3)  # let the operator finish its start-up lists before the burst
        pid = operator_pid(system, operator)
        cpu_before, _ = proc_usage(pid)
        custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)

        start = time.time()
        bodies = [talking_video(f"tv-{i:04d}", "bench") for i in range(args.count)]

        def create(body: dict[str, Any]) -> None:
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body, _preload_content=False)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, bodies))
        applied = time.time() - start

        jobs_at = done_at = None
        while time.time() - start < args.timeout:
            if jobs_at is None and len(list_raw(batch.list_namespaced_job, NAMESPACE)) >= args.count:
                jobs_at = time.time() - start
            tvs = list_raw(custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL)
            complete = sum(1 for tv in tvs if condition_time(tv, "Complete") is not None)
            if complete >= args.count:
                done_at = time.time() - start
                break
            time.sleep(0.5)
        cpu_after, peak = proc_usage(pid)

        jobs = {
            j["metadata"]["labels"].get("multitalk.dev/talkingvideo-uid"): j
            for j in list_raw(batch.list_namespaced_job, NAMESPACE)
        }
        delays = []
        for tv in list_raw(custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL):
            job = jobs.get(tv["metadata"]["uid"])
            tv_done = condition_time(tv, "Complete")
            job_done = condition_time(job, "Complete") if job else None
            if tv_done is not None and job_done is not None:
                delays.append(tv_done - job_done)

        time.sleep(3)  # the audit log is written in batches
        by_user: collections.Counter[str] = collections.Counter()
        by_kind: collections.Counter[str] = collections.Counter()  # the operator's, by verb and resource
        operator_user = f"system:serviceaccount:{install.SYSTEM_NAMESPACE}:"
        # The API server rotates its audit log at 100 MB: read the rotated files too.
        logs = sorted(plane.audit_log_path.parent.glob(plane.audit_log_path.stem + "*" + plane.audit_log_path.suffix))
        for line in (line for path in logs for line in path.read_text().splitlines()):
            event = json.loads(line)
            if event.get("stage") == "ResponseComplete":
                by_user[event["user"]["username"]] += 1
                if event["user"]["username"].startswith(operator_user):
                    ref = event.get("objectRef") or {}
                    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                    by_kind[f"{event.get('verb')} {ref.get('resource', '?')}{sub}"] += 1
        operator_requests = sum(n for user, n in by_user.items() if user.startswith(operator_user))

        print(f"TalkingVideos applied at once:        {args.count} (created in {applied:.1f} s by 16 clients)")
        print(f"all Jobs exist after:                 {jobs_at:.1f} s" if jobs_at else "all Jobs: NOT reached")
        print(f"all TalkingVideos Complete after:     {done_at:.1f} s" if done_at else "all Complete: NOT reached")
        if delays:
            q = statistics.quantiles(delays, n=20) if len(delays) > 1 else [delays[0]] * 19
            print(
                f"Job Complete -> TalkingVideo Complete: median {statistics.median(delays):.0f} s, "
                f"p95 {q[18]:.0f} s, max {max(delays):.0f} s (1 s timestamps)"
            )
        print(
            f"operator API requests:                {operator_requests} "
            f"({operator_requests / args.count:.1f} per object)"
        )
        for kind, n in by_kind.most_common(8):
            print(f"  {kind:<34}  {n / args.count:.2f} per object")
        print(f"all API requests (every client):      {sum(by_user.values())}")
        print(f"operator CPU during the run:          {cpu_after - cpu_before:.1f} s")
        print(f"operator peak RSS:                    {peak / 2**20:.0f} MiB")
        print(f"operator pod:                         {operator['metadata']['name']} ({args.operator_env} env)")
        return 0 if done_at else 1
    finally:
        gpus.stop()
        system.stop()
        api.close()
        plane.cleanup()


if __name__ == "__main__":
    sys.exit(main())
