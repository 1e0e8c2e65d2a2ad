"""Renders survive preemption, on the real API server (issue 13): a runner pod deleted mid-render
is replaced by the Job and the next pod resumes after the last checkpoint; a Kueue-style
suspend and resume of the Job ends in a resumed render; deleting a TalkingVideo whose
render did not finish removes its checkpoints through the clean-up Job.

The placeholder engine at 640x480 makes a window of 81 frames in a tenth of a second here,
less than a disruption takes to reach the pod on a loaded machine (measured: up to 15 s from
a Job's suspend to its pod gone, with the test node's CPUs busy): there the render
published before its pod was stopped. So the pods run with MULTITALK_FAULT=slow-window
(runner/faults.py): each window takes a second longer, as a real engine's windows do, and a
120 s video (38 windows) is still rendering when the disruption arrives. With
MULTITALK_TEST_NODE_RUNTIME=process the pods run this checkout's runner.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import pytest
from cluster.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from cluster.session import Cluster
from cluster.talkingvideos import GROUP, PLURAL, VERSION, apply, get_tv, jobs_of, talking_video, wait_phase
from cluster.testnode import TestNode
from cluster.waiting import eventually
from kubernetes import client

from multitalk.operator import job_builder
from multitalk.runner.faults import FAULT_ENV, FaultPoint
from multitalk.runner.request import REQUEST_ENV
from multitalk.runner.resume import SCRATCH_DIR

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
RUNNER = [sys.executable, "-m", "multitalk.runner.cli"]
WINDOW = 81
VIDEO = {"width": 640, "height": 480, "fps": 25, "durationSeconds": 120.0, "maxDurationSeconds": 120.0}
FRAMES = 3000
SLOW = {"env": [{"name": FAULT_ENV, "value": f"{FaultPoint.SLOW_WINDOW}:1"}]}  # 38 s or more per render


def long_render(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    return talking_video(name, ns, video=VIDEO, runner=SLOW, **spec)


def checkpoints(s3: S3Server, ns: str) -> list[str]:
    """Manifests of finished windows (of any request) under out/."""
    listing = s3.client().list_objects_v2(Bucket=ns, Prefix=f"out/{SCRATCH_DIR}/")
    return sorted(o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".json"))


def scratch_keys(s3: S3Server, ns: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=ns, Prefix=f"out/{SCRATCH_DIR}/")
    return [o["Key"] for o in listing.get("Contents", [])]


def pods_of(cluster: Cluster, ns: str, job: str) -> list[client.V1Pod]:
    core = client.CoreV1Api(cluster.api)
    return core.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={job}").items


def running_pods(cluster: Cluster, ns: str, job: str) -> list[client.V1Pod]:
    return [
        p for p in pods_of(cluster, ns, job) if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    ]


def output_exists(s3: S3Server, ns: str, name: str) -> bool:
    return "Contents" in s3.client().list_objects_v2(Bucket=ns, Prefix=f"out/{name}.mp4")


def decoded_frames(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [f.to_ndarray().tobytes() for f in c.decode(c.streams.video[0])]


def uninterrupted(cluster: Cluster, ns: str, job: str, s3: S3Server, tmp: Path) -> Path:
    """The same request rendered here in one go (from the Job's own MULTITALK_REQUEST), to a local file."""
    body = client.BatchV1Api(cluster.api).read_namespaced_job(job, ns)
    env = {e.name: e.value for e in body.spec.template.spec.containers[0].env if e.value is not None}
    request = json.loads(env[REQUEST_ENV])
    request["output"] = {"uri": str(tmp / "reference.mp4")}
    (tmp / "request.json").write_text(json.dumps(request))
    # The chart's storage defaults reach the pod as AWS_* variables, as here.
    creds = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": s3.endpoint,
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "multitalk.runner.cli",
            "render",
            "--request",
            str(tmp / "request.json"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), **creds},
        cwd=tmp,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return tmp / "reference.mp4"


def assert_resumed(status: dict[str, Any], windows_before: int) -> None:
    resume = status["resume"]
    print(f"checkpointed before the disruption: {windows_before} windows; status.resume: {resume}")
    windows = -(-FRAMES // WINDOW)
    assert resume["windowsTotal"] == resume["windowsDone"] == windows and resume["windowFrames"] == WINDOW
    frame = resume["resumedFromFrame"]
    assert frame % WINDOW == 0 and windows_before * WINDOW <= frame < FRAMES, resume


@pytest.mark.parametrize("how", ["delete", "evict"])
def test_a_deleted_runner_pod_is_replaced_and_the_next_pod_resumes(
    cluster: Cluster,
    operator: dict[str, Any],
    render_namespace: str,
    gpu_node: TestNode,
    s3: S3Server,
    tmp_path: Path,
    how: str,
) -> None:
    """Deleted (as a person or a controller would) or evicted (as a drain does: the API server
    marks the pod DisruptionTarget). An eviction does not count against backoffLimit, so the
    render survives it with backoffLimit 0."""
    ns = render_namespace
    apply(cluster, ns, long_render("preempted", ns, backoffLimit=1 if how == "delete" else 0))
    job = eventually(lambda: jobs_of(cluster, ns), 60, "the Job")[0].metadata.name
    eventually(lambda: len(checkpoints(s3, ns)) >= 2, 180, "two windows checkpointed")
    [pod] = running_pods(cluster, ns, job)
    core = client.CoreV1Api(cluster.api)
    if how == "delete":
        core.delete_namespaced_pod(pod.metadata.name, ns)
    else:
        eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=ns))
        core.create_namespaced_pod_eviction(pod.metadata.name, ns, eviction)
    windows_before = len(checkpoints(s3, ns))

    status = wait_phase(cluster, ns, "preempted", ("Succeeded", "Failed"), timeout=300)["status"]
    assert status["phase"] == "Succeeded", status
    assert_resumed(status, windows_before)
    runs = [run for run in gpu_node.exec_log if run[0].startswith(f"{ns}/")]
    assert len(runs) == 2 and runs[-1][2] == 0 and runs[0][0] != runs[-1][0], runs  # two pods, the second done
    [finished] = jobs_of(cluster, ns)
    assert finished.status.failed == (1 if how == "delete" else None), finished.status  # an eviction is not a failure
    assert scratch_keys(s3, ns) == []  # published: the scratch is gone
    got = tmp_path / "got.mp4"
    s3.client().download_file(ns, "out/preempted.mp4", str(got))
    assert decoded_frames(got) == decoded_frames(uninterrupted(cluster, ns, job, s3, tmp_path))


def test_a_kueue_style_suspend_and_resume_ends_in_a_resumed_render(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode, s3: S3Server
) -> None:
    """No Kueue here: the test plays it on a queued Job (admit = unsuspend, preempt = suspend)."""
    ns = render_namespace
    apply(cluster, ns, long_render("queued", ns, scheduling={"queueName": "gpus"}))
    batch = client.BatchV1Api(cluster.api)
    job = eventually(lambda: jobs_of(cluster, ns), 60, "the Job")[0].metadata.name
    assert batch.read_namespaced_job(job, ns).spec.suspend is True
    admitted = time.monotonic()
    batch.patch_namespaced_job(job, ns, {"spec": {"suspend": False}})  # admitted
    seen = len(eventually(lambda: checkpoints(s3, ns), 180, "a window checkpointed"))
    started = time.monotonic()
    batch.patch_namespaced_job(job, ns, {"spec": {"suspend": True}})  # preempted: the Job deletes its pod
    [pod] = pods_of(cluster, ns, job)
    # Gone, not only marked for deletion: its container has stopped and its final state is posted.
    eventually(lambda: not pods_of(cluster, ns, job), 150, "the pod to be gone")
    windows_before = len(checkpoints(s3, ns))
    print(
        f"admitted to {seen} windows seen: {started - admitted:.1f} s; suspend to pod gone: "
        f"{time.monotonic() - started:.1f} s, {windows_before} windows checkpointed"
    )
    # The premise: the suspend stopped the render part-way (else there is nothing to resume).
    assert not output_exists(s3, ns, "queued"), (
        f"the render published before the suspend stopped it ({windows_before} windows); its pod's log:\n"
        + gpu_node.pod_log(ns, pod.metadata.name)[-6000:]
    )
    batch.patch_namespaced_job(job, ns, {"spec": {"suspend": False}})  # admitted again

    status = wait_phase(cluster, ns, "queued", ("Succeeded", "Failed"), timeout=300)["status"]
    assert status["phase"] == "Succeeded", status
    assert_resumed(status, windows_before)
    assert scratch_keys(s3, ns) == []


def test_deleting_an_unfinished_render_removes_its_checkpoints(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode, s3: S3Server
) -> None:
    ns = render_namespace
    apply(cluster, ns, long_render("abandoned", ns))
    eventually(lambda: len(checkpoints(s3, ns)) >= 2, 180, "two windows checkpointed")
    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "abandoned")

    def cleanup_done() -> client.V1Job | None:
        for job in jobs_of(cluster, ns):
            if job.metadata.labels.get(job_builder.LABEL_NAME) == job_builder.CLEANUP_NAME and job.status.succeeded:
                return job
        return None

    cleanup = eventually(cleanup_done, 180, "the clean-up Job to succeed")
    assert cleanup.metadata.owner_references is None
    assert cleanup.spec.ttl_seconds_after_finished == job_builder.CLEANUP_TTL_SECONDS
    assert scratch_keys(s3, ns) == []
    runs = [run for run in gpu_node.exec_log if run[0].startswith(f"{ns}/")]
    # The render's pod ended (SIGTERM: exit 1) before the clean-up's ran, which succeeded.
    assert [code for _, _, code in runs] == [1, 0] and runs[1][0].startswith(f"{ns}/{cleanup.metadata.name}"), runs
    with pytest.raises(client.ApiException):
        get_tv(cluster, ns, "abandoned")


def test_a_succeeded_render_gets_no_cleanup_job(
    cluster: Cluster, operator: dict[str, Any], render_namespace: str, gpu_node: TestNode
) -> None:
    ns = render_namespace
    apply(cluster, ns, talking_video("done", ns))
    assert wait_phase(cluster, ns, "done", ("Succeeded", "Failed"))["status"]["phase"] == "Succeeded"
    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "done")
    eventually(lambda: not jobs_of(cluster, ns), 60, "the Job garbage-collected")
    eventually(lambda: len([r for r in gpu_node.exec_log if r[0].startswith(f"{ns}/")]) == 1, 5, "one run")
    time.sleep(3)  # a clean-up Job would be created within a second of the deletion
    assert jobs_of(cluster, ns) == []
