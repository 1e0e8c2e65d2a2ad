"""Operator at scale against KMock's Kubernetes emulator (over HTTP, in this process).

500 TalkingVideos are created at once while the real operator process runs. Printed:
- seconds until every Job exists, and until every status shows Queued;
- API requests the operator made per object (by User-Agent, split by verb/resource);
- operator CPU seconds per object (user+system from /proc, the "work per object");
- operator peak RSS (VmHWM);
- delay from a Job turning Complete to the TalkingVideo's status showing Succeeded
  (sampled one object at a time, then all the rest at once).
Targets: < 20 ms operator CPU per object, RSS < 150 MB.

Run: .venv/bin/python benchmarks/operator_scale.py [--objects 500] [--samples 30]
The emulator shares this process's CPU, so wall-clock figures include its overhead;
the operator's own CPU and memory are measured on its process alone.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import kmock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "operator"))

from kmock_cluster import TV, Cluster  # noqa: E402
from kmock_harness import MERGE, OperatorProcess, tv_path, write_kubeconfig  # noqa: E402

CLK_TCK = 100  # os.sysconf("SC_CLK_TCK") on Linux


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def operator_requests(cluster: Cluster) -> collections.Counter[str]:
    """Requests by the operator (kopf's watches and the kubernetes client), by verb and resource."""
    return collections.Counter(
        {f"{method} {what}": n for (who, method, what), n in cluster.tally.items() if who == "operator"}
    )


def tv_body(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "multitalk.dev/v1alpha1",
        "kind": "TalkingVideo",
        "metadata": {"name": f"clip-{i:04d}", "namespace": "media", "labels": {"team": "bench"}},
        "spec": {
            "engine": "multitalk",
            "image": "s3://media-in/face.jpg",
            "speakers": [{"audio": f"s3://media-in/voice-{i}.wav"}],
            "output": {"uri": f"s3://media-out/clip-{i:04d}.mp4"},
            "storage": {"secretRef": {"name": "s3-creds"}},
            "scheduling": {"queueName": "gpu"},
        },
    }


RESULT = json.dumps(
    {
        "ok": True,
        "exitCode": 0,
        "engine": {"requested": "multitalk", "name": "multitalk", "device": "cuda:0"},
        "timings": {"generateSeconds": 100.0, "totalSeconds": 110.0},
        "output": {
            "uri": "s3://media-out/x.mp4",
            "sizeBytes": 1,
            "sha256": "00" * 32,
            "durationSeconds": 4.0,
            "width": 480,
            "height": 480,
            "fps": 25,
            "frames": 100,
        },
    }
)


async def finish(cluster: Cluster, job: dict[str, Any], create_pod: bool = True, complete_job: bool = True) -> None:
    """Play Kueue, the Job controller and the kubelet: admitted, ran, succeeded."""
    name = job["metadata"]["name"]
    template = job["spec"]["template"]["metadata"]  # the Job controller copies its labels and annotations
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-p",
            "namespace": "media",
            "labels": {**template.get("labels", {}), "batch.kubernetes.io/job-name": name},
            "annotations": dict(template.get("annotations", {})),
        },
        "spec": {"nodeName": "gpu-1", "containers": [{"name": "runner"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "runner",
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "message": RESULT,
                            "startedAt": "2026-11-25T10:02:00Z",
                            "finishedAt": "2026-11-25T10:04:00Z",
                        }
                    },
                }
            ],
        },
    }
    if create_pod:
        await cluster.post("/api/v1/namespaces/media/pods", json=pod)
    if not complete_job:
        return
    status = {
        "startTime": "2026-11-25T10:01:00Z",
        "completionTime": "2026-11-25T10:04:01Z",
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-25T10:04:01Z"}],
    }
    await cluster.patch(f"/apis/batch/v1/namespaces/media/jobs/{name}/status", json={"status": status}, headers=MERGE)


def phases(cluster: Cluster) -> collections.Counter[str]:
    return collections.Counter((o.get("status") or {}).get("phase", "-") for o in cluster.objects_of(TV, "media"))


async def wait(check: Any, timeout: float) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError
        await asyncio.sleep(0.05)
    return time.perf_counter() - start


async def run(objects: int, samples: int) -> None:
    async with Cluster(history_limit=64) as cluster, kmock.Server(cluster):
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig", str(cluster.url).rstrip("/"))
            operator = OperatorProcess(kubeconfig, Path(tmp), {"MULTITALK_RESYNC_SECONDS": "60"})
            await operator.start()
            try:
                await measure(cluster, operator, objects, samples)
            finally:
                await operator.stop()
                if "--keep-log" in sys.argv:
                    Path("out").mkdir(exist_ok=True)
                    Path("out/operator-bench.log").write_text(operator.logs())


async def measure(cluster: Cluster, operator: OperatorProcess, objects: int, samples: int) -> None:
    assert operator.proc is not None
    pid = operator.proc.pid
    async with aiohttp.ClientSession() as http:
        await wait_healthy(http, operator.health_port)
    cpu_idle = cpu_seconds(pid)
    rss_idle = peak_rss_mb(pid)
    requests_before = operator_requests(cluster)
    sem = asyncio.Semaphore(64)

    async def create(i: int) -> None:
        async with sem:
            resp = await cluster.post(tv_path("media"), json=tv_body(i))
            assert resp.status in (200, 201), await resp.text()

    print(f"objects: {objects}", flush=True)
    t0 = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(objects)))
    print(f"created (API calls returned): {time.perf_counter() - t0:.2f} s", flush=True)
    await wait(lambda: len(cluster.objects_of("batch/v1/jobs", "media")) >= objects, 900)
    t_jobs = time.perf_counter() - t0
    await wait(lambda: phases(cluster).get("Queued", 0) >= objects, 900)
    t_status = time.perf_counter() - t0
    print(f"all Jobs exist after: {t_jobs:.2f} s; all statuses Queued after: {t_status:.2f} s", flush=True)
    t_quiet = await quiescent(cluster) - t0
    print(f"operator idle again (events posted) after: {t_quiet:.2f} s", flush=True)
    cpu_create = cpu_seconds(pid) - cpu_idle
    kinds = operator_requests(cluster) - requests_before
    print(f"Jobs in the cluster: {len(cluster.objects_of('batch/v1/jobs', 'media'))} (expected {objects})")
    print(f"operator API requests per object (creation phase): {sum(kinds.values()) / objects:.2f}")
    for kind, count in kinds.most_common():
        print(f"    {kind}: {count / objects:.2f} per object")
    print(f"operator CPU per object, creation: {1000 * cpu_create / objects:.1f} ms (target < 20 ms)", flush=True)

    # Completion latency, one object at a time.
    jobs = sorted(cluster.objects_of("batch/v1/jobs", "media"), key=lambda j: j["metadata"]["name"])
    owner = {j["metadata"]["name"]: j["metadata"]["annotations"]["multitalk.dev/talkingvideo"] for j in jobs}

    def done(tv_name: str) -> bool:
        obj = cluster.objects[kmock.resource(TV), "media", tv_name]
        return bool((obj.raw.get("status") or {}).get("phase") == "Succeeded")

    delays = []
    for job in jobs[:samples]:
        await finish(cluster, job, complete_job=False)  # the pod ends first, as with a real kubelet
        await asyncio.sleep(0.3)
        start = time.perf_counter()
        await finish(cluster, job, create_pod=False)  # the clock starts when the Job is Complete
        await wait(lambda job=job: done(owner[job["metadata"]["name"]]), 120)
        delays.append(time.perf_counter() - start)
    if delays:
        ms = sorted(1000 * d for d in delays)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        print(
            f"Job Complete -> status Succeeded, one at a time ({len(ms)}): median {statistics.median(ms):.0f} ms, "
            f"p95 {p95:.0f} ms, max {ms[-1]:.0f} ms",
            flush=True,
        )

    # The rest at once.
    before_bulk = operator_requests(cluster)
    cpu_before_bulk = cpu_seconds(pid)
    rest = jobs[samples:]
    t1 = time.perf_counter()
    await asyncio.gather(*(finish(cluster, j) for j in rest))
    await wait(lambda: phases(cluster).get("Succeeded", 0) >= objects, 900)
    t_bulk = time.perf_counter() - t1
    await quiescent(cluster)
    cpu_bulk = cpu_seconds(pid) - cpu_before_bulk
    kinds_done = operator_requests(cluster) - before_bulk
    if rest:
        print(f"{len(rest)} Jobs completed at once -> all statuses Succeeded after {t_bulk:.2f} s")
        print(f"operator API requests per object (completion): {sum(kinds_done.values()) / len(rest):.2f}")
        for kind, count in kinds_done.most_common():
            print(f"    {kind}: {count / len(rest):.2f} per object")
        print(f"operator CPU per object, completion: {1000 * cpu_bulk / len(rest):.1f} ms")
    print(f"Jobs in the cluster at the end: {len(cluster.objects_of('batch/v1/jobs', 'media'))} (no duplicates)")
    print(f"operator peak RSS: {peak_rss_mb(pid):.1f} MB (idle {rss_idle:.1f} MB; target < 150 MB)")


async def quiescent(cluster: Cluster, quiet: float = 2.0, timeout: float = 600) -> float:
    """Wait until the operator has made no request for `quiet` seconds; returns that moment."""
    deadline = time.perf_counter() + timeout
    last, since = sum(operator_requests(cluster).values()), time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
        now_count = sum(operator_requests(cluster).values())
        if now_count != last:
            last, since = now_count, time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            return since
    raise TimeoutError("the operator never went quiet")


async def wait_healthy(http: aiohttp.ClientSession, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("operator liveness endpoint never answered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--keep-log", action="store_true", help="write the operator's log to out/operator-bench.log")
    args = parser.parse_args()
    asyncio.run(run(args.objects, args.samples))


if __name__ == "__main__":
    main()
