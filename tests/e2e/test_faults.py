"""Faults on the real API server, each ending with nothing lost and nothing done twice."""

from __future__ import annotations

import collections
import random
import threading
import time
from typing import Any

import pytest
from cluster import install
from cluster.controlplane import free_port
from cluster.s3server import S3Server
from cluster.session import Cluster
from cluster.talkingvideos import GROUP, PLURAL, VERSION, apply, get_tv, jobs_of, talking_video, wait_phase
from cluster.testnode import TestNode
from cluster.waiting import eventually
from kubernetes import client, watch

pytestmark = pytest.mark.cluster


def runs_in(node: TestNode, namespace: str) -> list[tuple[str, str, int]]:
    """(pod, uid, exit code) of every container run the node finished in ``namespace``."""
    return [run for run in node.exec_log if run[0].startswith(f"{namespace}/")]


def test_invalid_input_fails_at_once_without_retry(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode, s3: S3Server
) -> None:
    ns = render_namespace
    s3.client().put_object(Bucket=ns, Key="in/noise.wav", Body=b"this is not a wave file" * 100)
    tv = talking_video("bad-audio", ns, backoffLimit=3)
    tv["spec"]["speakers"] = [{"audio": f"s3://{ns}/in/noise.wav"}]
    apply(cluster, ns, tv)
    status = wait_phase(cluster, ns, "bad-audio", ("Failed", "Succeeded"))["status"]
    assert status["phase"] == "Failed"
    assert status["lastFailure"]["reason"] == "InvalidInput" and status["lastFailure"]["exitCode"] == 3
    assert "speakers[0].audio" in status["lastFailure"]["message"] or "audio" in status["lastFailure"]["message"]
    time.sleep(3)  # a retry would have started by now
    assert [code for _, _, code in runs_in(gpu_node, ns)] == [3]


def test_crash_is_retried_up_to_backoff_limit_then_failed(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode
) -> None:
    ns = render_namespace
    # Nothing listens there: the runner's storage retries give up with exit 1 (retryable).
    tv = talking_video("no-storage", ns, backoffLimit=1)
    tv["spec"]["storage"] = {"endpoint": f"http://127.0.0.1:{free_port()}", "region": "us-east-1"}
    apply(cluster, ns, tv)
    status = wait_phase(cluster, ns, "no-storage", ("Failed", "Succeeded"), timeout=240)["status"]
    assert status["phase"] == "Failed"
    assert status["lastFailure"]["exitCode"] == 1
    assert [code for _, _, code in runs_in(gpu_node, ns)] == [1, 1]
    jobs = jobs_of(cluster, ns)
    assert len(jobs) == 1 and jobs[0].status.failed == 2
    # Level-triggered: the count converges on what the Job reports, also after the
    # TalkingVideo reads Failed (the Job's FailureTarget comes before its final counts).
    eventually(
        lambda: get_tv(cluster, ns, "no-storage")["status"]["attempts"]["failed"] == 2, 30, "attempts.failed == 2"
    )


def test_unschedulable_pod_ends_failed_with_pending_deadline(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode
) -> None:
    ns = render_namespace
    tv = talking_video("nowhere", ns, pendingDeadlineSeconds=30)
    tv["spec"]["scheduling"] = {"nodeSelector": {"gpu.example/model": "h100"}}
    apply(cluster, ns, tv)
    status = wait_phase(cluster, ns, "nowhere", ("Failed", "Succeeded"), timeout=120)["status"]
    assert status["phase"] == "Failed"
    assert status["lastFailure"]["reason"] == "PendingDeadlineExceeded"
    assert runs_in(gpu_node, ns) == []


def test_job_deleted_by_hand_is_reported(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode
) -> None:
    ns = render_namespace
    tv = talking_video("orphan", ns, pendingDeadlineSeconds=600)
    tv["spec"]["scheduling"] = {"nodeSelector": {"gpu.example/model": "h100"}}
    apply(cluster, ns, tv)
    job = eventually(lambda: jobs_of(cluster, ns), 60, "the Job")[0]
    client.BatchV1Api(cluster.api).delete_namespaced_job(job.metadata.name, ns, propagation_policy="Background")
    status = wait_phase(cluster, ns, "orphan", ("Failed",), timeout=60)["status"]
    assert status["lastFailure"]["reason"] == "JobDeleted"
    time.sleep(3)  # the operator must not quietly make a second Job
    assert jobs_of(cluster, ns) == []


def test_object_deleted_right_after_creation_gets_no_job(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode
) -> None:
    """Issue 16 item 4: the stale "added" event was reconciled after the delete (4 times in 4)
    and a Job made; its runner started before the garbage collector removed it."""
    ns = render_namespace
    batch, custom = client.BatchV1Api(cluster.api), client.CustomObjectsApi(cluster.api)
    since = batch.list_namespaced_job(ns).metadata.resource_version
    # The revision at which each object was deleted, and at which each Job was stored. One
    # etcd orders both (the loopback control plane has one): a Job stored after its
    # owner's deletion is the bug; one stored before it was made for a live object.
    deleted_at: dict[str, int] = {}
    job_at: dict[str, int] = {}
    # Deleted at once and up to 0.3 s later: before the operator's coalesced reconcile (0.5 s
    # after the first event) reads the object, where the stale event used to win. A delete
    # between that read and the Job create (milliseconds, at about 0.5 s) still gets a Job,
    # which the garbage collector removes: the window a GET-then-create cannot close.
    delays = [0.0, 0.1, 0.2, 0.3] * 4
    names = [f"gone-{i}" for i in range(len(delays))]

    def record_jobs() -> None:
        stream = watch.Watch()
        for event in stream.stream(batch.list_namespaced_job, ns, resource_version=since, timeout_seconds=120):
            meta = event["object"].metadata
            if event["type"] == "ADDED":
                job_at[meta.owner_references[0].name] = int(meta.resource_version)
            if "kept" in job_at:
                stream.stop()

    def record_deletions() -> None:
        stream = watch.Watch()
        listing = (custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL)
        for event in stream.stream(*listing, resource_version=since, timeout_seconds=120):
            meta = event["object"]["metadata"]
            if event["type"] == "DELETED":
                deleted_at[meta["name"]] = int(meta["resourceVersion"])
            if set(names) <= set(deleted_at):
                stream.stop()

    watchers = [threading.Thread(target=t, daemon=True) for t in (record_jobs, record_deletions)]
    for watcher in watchers:
        watcher.start()
    for name, delay in zip(names, delays, strict=True):
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, talking_video(name, ns))
        time.sleep(delay)
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    time.sleep(3)  # the operator handles the stale events meanwhile
    apply(cluster, ns, talking_video("kept", ns))  # a live one still gets its Job
    for watcher in watchers:
        watcher.join(120)
    assert "kept" in job_at and set(names) <= set(deleted_at), (job_at, deleted_at)
    stale = {name: (job_at[name], deleted_at[name]) for name in names if job_at.get(name, 0) > deleted_at[name]}
    assert stale == {}, f"Jobs created after their TalkingVideo was deleted: {stale}"


def test_operator_killed_at_random_moments_renders_each_exactly_once(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode, s3: S3Server
) -> None:
    ns = render_namespace
    names = [f"r{i:02d}" for i in range(20)]
    chaos = random.Random(6)
    kills = 0
    stop = threading.Event()

    def kill_operator_now_and_then() -> None:
        nonlocal kills
        while not stop.wait(chaos.uniform(0.3, 4.0)):
            pod = install.operator_pod(cluster)
            if pod and gpu_node.kill(pod["metadata"]["namespace"], pod["metadata"]["name"]):
                kills += 1

    killer = threading.Thread(target=kill_operator_now_and_then, daemon=True)
    killer.start()
    try:
        for i, name in enumerate(names):
            apply(cluster, ns, talking_video(name, ns))
            time.sleep(chaos.uniform(0, 0.5))
            if i % 4 == 3:
                # Pace the applies by the kills, so that at least five land among the renders
                # however fast this machine renders them.
                want = (i + 1) // 4
                eventually(lambda want=want: kills >= want, timeout=120, what=f"{want} operator kills")
        for name in names:
            assert wait_phase(cluster, ns, name, ("Succeeded", "Failed"), timeout=400)["status"]["phase"] == "Succeeded"
    finally:
        stop.set()
        killer.join()
    assert kills >= 5

    jobs = jobs_of(cluster, ns)
    owners = collections.Counter(job.metadata.owner_references[0].name for job in jobs)
    assert owners == collections.Counter(names), "one Job per TalkingVideo generation"
    runs = runs_in(gpu_node, ns)
    assert len(runs) == len(names) and all(code == 0 for _, _, code in runs), runs
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=ns, Prefix="out/")["Contents"]}
    assert {f"out/{name}.mp4" for name in names} <= keys
    for name in names:
        # Once seen (1 run in 3): Succeeded written before output after a kill; it must converge.
        eventually(
            lambda n=name: (
                (get_tv(cluster, ns, n)["status"].get("output") or {}).get("uri") == f"s3://{ns}/out/{n}.mp4"
            ),
            30,
            f"{name}'s status.output",
        )


def test_storage_outage_during_the_run_is_retried_without_a_partial_object(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode, s3: S3Server
) -> None:
    ns = render_namespace
    outage = threading.Event()

    def stop_storage_when_the_runner_starts(pod: dict[str, Any]) -> None:
        if pod["metadata"]["namespace"] == ns and not outage.is_set():
            outage.set()
            s3.stop()
            threading.Timer(4.0, s3.start).start()

    gpu_node.on_start = stop_storage_when_the_runner_starts
    try:
        apply(cluster, ns, talking_video("outage", ns, backoffLimit=3))
        status = wait_phase(cluster, ns, "outage", ("Succeeded", "Failed"), timeout=300)["status"]
    finally:
        gpu_node.on_start = None
        eventually(lambda: s3._server is not None, 10, "the S3 server to be back")
    assert outage.is_set()
    assert status["phase"] == "Succeeded", status
    listing = s3.client().list_objects_v2(Bucket=ns, Prefix="out/")["Contents"]
    assert [o["Key"] for o in listing if o["Key"].endswith(".mp4")] == ["out/outage.mp4"]
    assert s3.client().list_multipart_uploads(Bucket=ns).get("Uploads", []) == []
    assert len(jobs_of(cluster, ns)) == 1


def test_api_server_restart_during_a_run(
    local_cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode
) -> None:
    ns = render_namespace
    plane = local_cluster.plane
    assert plane is not None
    restarts: list[threading.Thread] = []

    def restart_api_server_when_the_runner_starts(pod: dict[str, Any]) -> None:
        if pod["metadata"]["namespace"] == ns and not restarts:
            restarts.append(threading.Thread(target=plane.restart_apiserver, args=(3.0,)))
            restarts[0].start()

    gpu_node.on_start = restart_api_server_when_the_runner_starts
    try:
        apply(local_cluster, ns, talking_video("restart", ns, backoffLimit=2))
        eventually(lambda: restarts, 120, "the runner to start")
        restarts[0].join()
        status = wait_phase(local_cluster, ns, "restart", ("Succeeded", "Failed"), timeout=240)["status"]
    finally:
        gpu_node.on_start = None
    assert status["phase"] == "Succeeded", status
    assert len(jobs_of(local_cluster, ns)) == 1
    assert len(runs_in(gpu_node, ns)) == 1
