"""The test node runs a Job's runner container from the runner image against the local S3 server."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import av
import pytest
from cluster import images
from cluster.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from cluster.session import Cluster
from cluster.testnode import TestNode
from cluster.waiting import eventually
from kubernetes import client

pytestmark = pytest.mark.cluster

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"


def runner_job(name: str, request: dict[str, Any], secret: str) -> dict[str, Any]:
    """A Job shaped like the operator's: request in the env, result in the termination log."""
    env = [
        {"name": "MULTITALK_REQUEST", "value": json.dumps(request)},
        {"name": "MULTITALK_RESULT_PATH", "value": "/dev/termination-log"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ),
    ]
    container = {
        "name": "runner",
        "image": images.RUNNER_IMAGE,
        "command": ["multitalk-runner", "render"],
        "env": env,
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
        "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
    return {"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}}}


@pytest.fixture
def bucket(s3: S3Server, namespace: str) -> str:
    s3.client().create_bucket(Bucket=namespace)
    s3.client().upload_file(str(MEDIA / "hello.wav"), namespace, "in/hello.wav")
    s3.client().upload_file(str(MEDIA / "portrait.jpg"), namespace, "in/portrait.jpg")
    return namespace


def test_runner_pod_renders_to_s3_and_reports_its_result(
    local_cluster: Cluster, namespace: str, test_node: TestNode, s3: S3Server, bucket: str
) -> None:
    core, batch = client.CoreV1Api(local_cluster.api), client.BatchV1Api(local_cluster.api)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "s3"},
            "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
        },
    )
    request = {
        "engine": "placeholder",
        "image": f"s3://{bucket}/in/portrait.jpg",
        "speakers": [{"audio": f"s3://{bucket}/in/hello.wav"}],
        "video": {"width": 256, "height": 256, "fps": 25},
        "output": {"uri": f"s3://{bucket}/out/hello.mp4"},
        "storage": {"endpoint": s3.endpoint, "region": REGION},
    }
    batch.create_namespaced_job(namespace, runner_job("render", request, "s3"))

    def finished() -> str | None:
        conditions = batch.read_namespaced_job_status("render", namespace).status.conditions or []
        return next((c.type for c in conditions if c.type in ("Complete", "Failed") and c.status == "True"), None)

    outcome = eventually(finished, 120, "the Job to finish")
    pod = core.list_namespaced_pod(namespace, label_selector="job-name=render").items[0]
    terminated = pod.status.container_statuses[0].state.terminated
    assert outcome == "Complete", f"{terminated}\n{test_node.pod_log(namespace, pod.metadata.name)}"
    assert terminated.exit_code == 0
    result = json.loads(terminated.message)
    assert result["ok"] is True and result["engine"]["name"] == "placeholder"
    assert result["output"]["uri"] == f"s3://{bucket}/out/hello.mp4"
    # From the runner image, unless the node was told to run local processes.
    image = None if test_node.runtime == "process" else images.RUNNER_IMAGE
    assert test_node.started == [(f"{namespace}/{pod.metadata.name}", image)]

    video = s3.client().get_object(Bucket=bucket, Key="out/hello.mp4")["Body"].read()
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 256, 256)
        assert sum(1 for _ in container.decode(video=0)) == result["output"]["frames"]


def test_pod_needing_more_gpus_than_the_node_has_stays_pending_as_unschedulable(
    local_cluster: Cluster, namespace: str, test_node: TestNode
) -> None:
    core = client.CoreV1Api(local_cluster.api)
    pod = {
        "metadata": {"name": "greedy"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "x", "command": ["true"], "resources": {"limits": {"nvidia.com/gpu": "8"}}}
            ],
        },
    }
    core.create_namespaced_pod(namespace, pod)

    def unschedulable() -> bool:
        conditions = core.read_namespaced_pod("greedy", namespace).status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)

    eventually(unschedulable, 30, "the PodScheduled=False condition")
    stored = core.read_namespaced_pod("greedy", namespace)
    assert stored.spec.node_name is None and stored.status.phase == "Pending"
    assert "Insufficient nvidia.com/gpu" in stored.status.conditions[0].message


def sleeper_job(name: str) -> dict[str, Any]:
    """A Job with a pod failure policy, like the operator's: its controller counts a deleted
    pod (and makes the next) only once the pod has a final phase."""
    container = {"name": "main", "image": "x", "command": ["sleep", "600"]}
    pod_spec = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5, "containers": [container]}
    policy = {
        "rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]}}]
    }
    return {
        "metadata": {"name": name},
        "spec": {"backoffLimit": 2, "podFailurePolicy": policy, "template": {"spec": pod_spec}},
    }


def test_deleted_pod_is_stopped_and_finished_so_its_job_makes_the_next(
    local_cluster: Cluster, namespace: str, test_node: TestNode
) -> None:
    """Issue 16 item 6: a runner pod deleted by hand stayed Running with a deletion timestamp
    forever, and its Job never replaced it."""
    core, batch = client.CoreV1Api(local_cluster.api), client.BatchV1Api(local_cluster.api)
    batch.create_namespaced_job(namespace, sleeper_job("sleeper"))

    def pods() -> list[Any]:
        return list(core.list_namespaced_pod(namespace, label_selector="job-name=sleeper").items)

    def running() -> Any:
        found = [p for p in pods() if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        return found[0] if found else None

    first = eventually(running, 60, "the first pod running")
    eventually(lambda: test_node.container_running(first.metadata.uid), 30, "its container started")
    core.delete_namespaced_pod(first.metadata.name, namespace)
    second = eventually(
        lambda: (p := running()) is not None and p.metadata.name != first.metadata.name and p, 90, "a replacement pod"
    )
    assert second.metadata.uid != first.metadata.uid
    assert batch.read_namespaced_job_status("sleeper", namespace).status.failed == 1
    # The container was stopped within its grace period (SIGTERM: 128 + 15), and posted.
    assert (f"{namespace}/{first.metadata.name}", first.metadata.uid, 143) in test_node.exec_log
    eventually(lambda: first.metadata.name not in [p.metadata.name for p in pods()], 30, "the first pod removed")


def test_no_container_starts_for_a_pod_deleted_before_it_started(
    local_cluster: Cluster, namespace: str, test_node: TestNode
) -> None:
    core = client.CoreV1Api(local_cluster.api)
    # A finalizer keeps the object while it terminates, as the Job controller's does for its pods.
    hold = "multitalk.dev/test-hold"
    pod = {
        "metadata": {"name": "late", "finalizers": [hold]},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "x", "command": ["sleep", "600"]}],
        },
    }

    def delete_before_the_container_starts(started: dict[str, Any]) -> None:
        uid = started["metadata"]["uid"]
        core.delete_namespaced_pod("late", namespace)
        # Hold the start until the node has begun the deletion (the race, made certain).
        eventually(lambda: test_node.deletion_begun(uid), 30, "the deletion to begin")

    test_node.on_start = delete_before_the_container_starts
    try:
        core.create_namespaced_pod(namespace, pod)
        failed = eventually(
            lambda: (p := core.read_namespaced_pod("late", namespace)).status.phase == "Failed" and p,
            60,
            "phase Failed",
        )
        assert failed.status.container_statuses[0].state.terminated.reason == "ContainerStatusUnknown"
        assert test_node.started == [], "a container was started for a pod being deleted"
    finally:
        test_node.on_start = None
        core.patch_namespaced_pod("late", namespace, {"metadata": {"finalizers": None}})
    eventually(lambda: not core.list_namespaced_pod(namespace).items, 30, "the pod removed")


def test_a_deletion_does_not_wait_for_a_worker_held_by_a_running_container(
    local_cluster: Cluster, namespace: str
) -> None:
    """A start holds its worker while the container runs. Deletions shared those workers, so
    with every one held (the e2e session's operator pods and renders) a suspended Job's pod
    rendered on until it published: the resume e2e then had nothing to resume. One worker
    here makes that certain."""
    core = client.CoreV1Api(local_cluster.api)
    node = TestNode(local_cluster.api, f"one-worker-{namespace}", gpus=1, namespace=namespace, workers=1)
    node.start()
    try:
        pod = {
            "metadata": {"name": "busy"},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "main", "image": "x", "command": ["sleep", "600"]}],
            },
        }
        uid = core.create_namespaced_pod(namespace, pod).metadata.uid
        eventually(lambda: node.container_running(uid), 60, "its container started")
        core.delete_namespaced_pod("busy", namespace)
        eventually(lambda: not core.list_namespaced_pod(namespace).items, 30, "the pod stopped and removed")
        assert (f"{namespace}/busy", uid, 143) in node.exec_log  # SIGTERM, not the end of the sleep
    finally:
        node.stop()
