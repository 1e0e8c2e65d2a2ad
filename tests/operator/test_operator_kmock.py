"""The running operator against KMock's Kubernetes emulator over HTTP."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kmock_cluster import TV, Cluster
from kmock_harness import MERGE, OperatorProcess, tv_path, wait_for

from multitalk.operator import api, job_builder
from multitalk.operator.settings import OperatorSettings

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

FIXTURES = Path(__file__).parent / "fixtures"


def new_tv(name: str = "hello") -> dict[str, Any]:
    tv: dict[str, Any] = yaml.safe_load((FIXTURES / "talkingvideo.yaml").read_text())
    meta = tv["metadata"]
    for server_field in ("uid", "generation", "creationTimestamp"):
        meta.pop(server_field)
    meta["name"] = name
    return tv


def the_tv(cluster: Cluster, name: str = "hello") -> dict[str, Any]:
    return next(o for o in cluster.objects_of(TV, "media") if o["metadata"]["name"] == name)


def jobs(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.objects_of("batch/v1/jobs", "media")


def conditions(tv: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (tv.get("status") or {}).get("conditions") or []}


def phase(cluster: Cluster, name: str = "hello") -> str | None:
    status = the_tv(cluster, name).get("status") or {}
    value = status.get("phase")
    return value if isinstance(value, str) else None


def job_creates(cluster: Cluster) -> int:
    return len(cluster["post", kmock.resource("batch/v1/jobs")])


async def create(cluster: Cluster, body: dict[str, Any]) -> dict[str, Any]:
    resp = await cluster.post(tv_path("media"), json=body)
    assert resp.status in (200, 201), await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def patch(cluster: Cluster, path: str, body: dict[str, Any]) -> None:
    resp = await cluster.patch(path, json=body, headers=MERGE)
    assert resp.status == 200, await resp.text()


def job_path(name: str) -> str:
    return f"/apis/batch/v1/namespaces/media/jobs/{name}"


async def kubelet_pod(cluster: Cluster, job: dict[str, Any], suffix: str, status: dict[str, Any]) -> str:
    """Play the Job controller + kubelet: a pod for the Job (the template's labels and
    annotations, plus the Job controller's own label), with the given status."""
    name = f"{job['metadata']['name']}-{suffix}"
    template = job["spec"]["template"]["metadata"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "media",
            "labels": {**template.get("labels", {}), "batch.kubernetes.io/job-name": job["metadata"]["name"]},
            "annotations": dict(template.get("annotations", {})),
        },
        "spec": copy.deepcopy(job["spec"]["template"]["spec"]) | {"nodeName": "gpu-node-1"},
        "status": status,
    }
    resp = await cluster.post("/api/v1/namespaces/media/pods", json=pod)
    assert resp.status in (200, 201), await resp.text()
    return name


async def set_pod_status(cluster: Cluster, name: str, status: dict[str, Any]) -> None:
    await patch(cluster, f"/api/v1/namespaces/media/pods/{name}/status", {"status": status})


RESULT = {
    "ok": True,
    "exitCode": 0,
    "engine": {"requested": "multitalk", "name": "multitalk", "device": "cuda:0", "version": "0.1.0"},
    "timings": {"downloadSeconds": 1.0, "generateSeconds": 300.0, "totalSeconds": 320.0},
    "audio": {"durationSeconds": 4.0, "sampleRate": 16000},
    "output": {
        "uri": "s3://media-out/hello.mp4",
        "sizeBytes": 123456,
        "sha256": "ab" * 32,
        "durationSeconds": 4.0,
        "width": 480,
        "height": 480,
        "fps": 25,
        "frames": 100,
    },
}


def running_status() -> dict[str, Any]:
    return {
        "phase": "Running",
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "runner",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-25T10:02:00Z"}},
            }
        ],
    }


def succeeded_status() -> dict[str, Any]:
    return {
        "phase": "Succeeded",
        "containerStatuses": [
            {
                "name": "runner",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "message": json.dumps(RESULT),
                        "startedAt": "2026-11-25T10:02:00Z",
                        "finishedAt": "2026-11-25T10:07:20Z",
                    }
                },
            }
        ],
    }


async def admit_and_run(cluster: Cluster, job: dict[str, Any]) -> str:
    """Kueue admits (unsuspends), the Job controller starts a pod, the kubelet runs it."""
    await patch(cluster, job_path(job["metadata"]["name"]), {"spec": {"suspend": False}})
    await patch(
        cluster,
        job_path(job["metadata"]["name"]) + "/status",
        {"status": {"startTime": "2026-11-25T10:01:00Z", "active": 1}},
    )
    return await kubelet_pod(cluster, job, "abcde", running_status())


async def complete(cluster: Cluster, job: dict[str, Any], pod: str) -> None:
    await set_pod_status(cluster, pod, succeeded_status())
    done = [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-11-25T10:07:21Z"},
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-25T10:07:22Z"},
    ]
    status = {"active": 0, "succeeded": 1, "completionTime": "2026-11-25T10:07:22Z", "conditions": done}
    await patch(cluster, job_path(job["metadata"]["name"]) + "/status", {"status": status})


async def test_create_makes_exactly_one_job_with_the_expected_manifest(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    created = await create(cluster, new_tv())
    await operator.start()
    await wait_for(lambda: jobs(cluster), what="the Job")
    await wait_for(lambda: phase(cluster) == "Queued", what="phase Queued")
    [job] = jobs(cluster)
    settings = OperatorSettings(runner_image="registry.example/multitalk-runner:test")
    expected = job_builder.build_job(created, api.parse_spec(created["spec"]), settings)
    owner = job["metadata"].pop("ownerReferences")
    assert owner == [
        {
            "apiVersion": "multitalk.dev/v1alpha1",
            "kind": "TalkingVideo",
            "name": "hello",
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    for server_field in ("uid", "creationTimestamp", "resourceVersion", "generation"):
        job["metadata"].pop(server_field, None)
    assert job == expected
    assert "app.kubernetes.io/instance" not in job["metadata"]["labels"]
    status = the_tv(cluster)["status"]
    assert status["job"] == {"name": job["metadata"]["name"]}
    assert conditions(the_tv(cluster))["Admitted"]["reason"] == "QueuedInKueue"
    await wait_for(
        lambda: any(e.get("reason") == "QueuedInKueue" for e in cluster.objects_of("v1/events", "media")),
        what="a QueuedInKueue event",
    )
    await asyncio_sleep(2.5)  # several resyncs later: still one Job
    assert len(jobs(cluster)) == 1 and job_creates(cluster) == 1
    # No finalizer, kopf's bookkeeping (if any) under our own prefix.
    meta = the_tv(cluster)["metadata"]
    assert not meta.get("finalizers")
    assert not [k for k in (meta.get("annotations") or {}) if k.startswith("kopf.zalando.org")]


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_job_and_pod_progress_reach_the_status(cluster: Cluster, operator: OperatorProcess) -> None:
    await create(cluster, new_tv())
    await operator.start()
    [job] = await wait_for(lambda: jobs(cluster), what="the Job")
    pod = await admit_and_run(cluster, job)
    await wait_for(lambda: phase(cluster) == "Running", what="phase Running")
    assert the_tv(cluster)["status"]["pod"] == {"name": pod, "nodeName": "gpu-node-1"}
    cluster.logs[("media", pod)] = 'loading\n{"event":"progress","stage":"generate","percent":37.5}\n'
    await wait_for(
        lambda: (the_tv(cluster)["status"].get("progress") or {}).get("percent") == 37.5, what="progress from the log"
    )
    assert the_tv(cluster)["status"]["progressText"] == "generate 38%"
    await complete(cluster, job, pod)
    await wait_for(lambda: phase(cluster) == "Succeeded", what="phase Succeeded")
    status = the_tv(cluster)["status"]
    assert conditions(the_tv(cluster))["Complete"]["status"] == "True"
    assert status["engine"]["name"] == "multitalk"
    assert status["output"]["uri"] == "s3://media-out/hello.mp4"
    assert status["timings"]["generateSeconds"] == 300.0
    assert status["progress"] == {"stage": "done", "percent": 100.0}
    assert status["observedGeneration"] == 1
    # Events are posted after the status write (off the object's lock): wait for the last one.
    await wait_for(
        lambda: "Rendered" in [e.get("reason") for e in cluster.objects_of("v1/events", "media")],
        what="the Rendered event",
    )
    reasons = [e.get("reason") for e in cluster.objects_of("v1/events", "media")]
    for reason in ("Valid", "QueuedInKueue", "Admitted", "PodRunning", "Rendered"):
        assert reason in reasons, reasons


async def test_restart_midway_makes_no_second_job_and_catches_up(cluster: Cluster, operator: OperatorProcess) -> None:
    await create(cluster, new_tv())
    await operator.start()
    [job] = await wait_for(lambda: jobs(cluster), what="the Job")
    pod = await admit_and_run(cluster, job)
    await wait_for(lambda: phase(cluster) == "Running", what="phase Running")
    await operator.kill()
    await complete(cluster, job, pod)  # the render ends while no operator watches
    assert phase(cluster) == "Running"
    await operator.start()
    await wait_for(lambda: phase(cluster) == "Succeeded", what="status catching up after the restart")
    assert len(jobs(cluster)) == 1 and job_creates(cluster) == 1


async def test_restart_right_after_creating_the_job(cluster: Cluster, operator: OperatorProcess) -> None:
    """Killed between creating the Job and writing the status: the next run adopts the Job."""
    await create(cluster, new_tv())
    await operator.start()
    await wait_for(lambda: jobs(cluster), what="the Job")
    await operator.kill()
    await patch(cluster, tv_path("media", "hello") + "/status", {"status": None})  # as if never written
    await operator.start()
    await wait_for(lambda: phase(cluster) == "Queued", what="status after the restart")
    assert len(jobs(cluster)) == 1


async def test_spec_change_after_the_job_is_ignored(cluster: Cluster, operator: OperatorProcess) -> None:
    await create(cluster, new_tv())
    await operator.start()
    [job] = await wait_for(lambda: jobs(cluster), what="the Job")
    await wait_for(lambda: phase(cluster) == "Queued", what="phase Queued")
    await patch(cluster, tv_path("media", "hello"), {"spec": {"prompt": "Something else entirely."}})
    assert the_tv(cluster)["metadata"]["generation"] == 2
    await wait_for(lambda: conditions(the_tv(cluster))["Accepted"]["reason"] == "SpecChangeIgnored", what="the warning")
    await wait_for(lambda: the_tv(cluster)["status"]["observedGeneration"] == 2, what="observedGeneration 2")
    assert jobs(cluster) == [job]
    # Events are posted after the status write (off the object's lock): wait for it.
    await wait_for(
        lambda: any(
            e.get("reason") == "SpecChangeIgnored" and e.get("type") == "Warning"
            for e in cluster.objects_of("v1/events", "media")
        ),
        what="a SpecChangeIgnored Warning event",
    )


async def test_invalid_spec_fails_without_a_job(cluster: Cluster, operator: OperatorProcess) -> None:
    bad = new_tv("bad")
    bad["spec"]["speakers"][0]["audio"] = "/local/voice.wav"  # KMock does not validate: the operator must
    await create(cluster, bad)
    await operator.start()
    await wait_for(lambda: phase(cluster, "bad") == "Failed", what="phase Failed")
    failed = conditions(the_tv(cluster, "bad"))["Failed"]
    assert failed["reason"] == "InvalidSpec" and "spec.speakers[0].audio" in failed["message"]
    assert jobs(cluster) == []


async def test_delete_removes_the_job_and_nothing_comes_back(cluster: Cluster, operator: OperatorProcess) -> None:
    await create(cluster, new_tv())
    await operator.start()
    await wait_for(lambda: jobs(cluster), what="the Job")
    await wait_for(lambda: phase(cluster) == "Queued", what="phase Queued")
    resp = await cluster.delete(tv_path("media", "hello"))
    assert resp.status == 200
    await wait_for(lambda: not jobs(cluster), what="the Job garbage-collected")
    await asyncio_sleep(2.0)
    assert jobs(cluster) == [] and job_creates(cluster) == 1
    assert "Traceback" not in operator.logs()


async def test_job_deleted_by_hand_fails_the_render(cluster: Cluster, operator: OperatorProcess) -> None:
    await create(cluster, new_tv())
    await operator.start()
    [job] = await wait_for(lambda: jobs(cluster), what="the Job")
    await wait_for(lambda: phase(cluster) == "Queued", what="phase Queued")
    resp = await cluster.delete(job_path(job["metadata"]["name"]))
    assert resp.status == 200
    await wait_for(lambda: phase(cluster) == "Failed", what="phase Failed")
    assert conditions(the_tv(cluster))["Failed"]["reason"] == "JobDeleted"
    await asyncio_sleep(1.5)
    assert job_creates(cluster) == 1, "a deleted Job is not silently re-created"


async def test_pending_deadline_deletes_the_job_and_fails(cluster: Cluster, operator: OperatorProcess) -> None:
    await create(cluster, new_tv())
    await operator.start()
    [job] = await wait_for(lambda: jobs(cluster), what="the Job")
    # Admitted an hour ago, and the pod still cannot pull its image: past pendingDeadlineSeconds (900).
    await patch(cluster, job_path(job["metadata"]["name"]), {"spec": {"suspend": False}})
    await patch(
        cluster, job_path(job["metadata"]["name"]) + "/status", {"status": {"startTime": "2020-01-01T00:00:00Z"}}
    )
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    await kubelet_pod(
        cluster,
        job,
        "pull1",
        {
            "phase": "Pending",
            "containerStatuses": [{"name": "runner", "ready": False, "restartCount": 0, "state": waiting}],
        },
    )
    await wait_for(lambda: phase(cluster) == "Failed", what="phase Failed")
    failed = conditions(the_tv(cluster))["Failed"]
    assert failed["reason"] == "PendingDeadlineExceeded"
    assert "Back-off pulling image" in failed["message"]
    await wait_for(lambda: not jobs(cluster), what="the Job deleted to free the queue slot")
    await asyncio_sleep(1.5)
    assert phase(cluster) == "Failed" and job_creates(cluster) == 1


async def test_suspend_holds_the_render_until_resumed(cluster: Cluster, operator: OperatorProcess) -> None:
    body = new_tv()
    body["spec"]["scheduling"] = {}
    body["spec"]["suspend"] = True
    await create(cluster, body)
    await operator.start()
    await wait_for(lambda: phase(cluster) == "Suspended", what="phase Suspended")
    await asyncio_sleep(1.5)
    assert jobs(cluster) == []
    await patch(cluster, tv_path("media", "hello"), {"spec": {"suspend": False}})
    [job] = await wait_for(lambda: jobs(cluster), what="the Job after resuming")
    assert job["spec"]["suspend"] is False
    assert job_builder.KUEUE_QUEUE_LABEL not in job["metadata"]["labels"]
    await wait_for(lambda: phase(cluster) == "Pending", what="phase Pending")
    # Suspending again (no Kueue queue): the operator suspends the Job itself.
    await patch(cluster, tv_path("media", "hello"), {"spec": {"suspend": True}})
    await wait_for(lambda: jobs(cluster)[0]["spec"]["suspend"] is True, what="the Job suspended")
    await wait_for(lambda: phase(cluster) == "Suspended", what="phase Suspended again")


async def test_watched_namespaces_setting(cluster: Cluster, operator: OperatorProcess) -> None:
    operator.extra_env["MULTITALK_NAMESPACES"] = "media"
    elsewhere = new_tv("elsewhere")
    elsewhere["metadata"]["namespace"] = "other"
    resp = await cluster.post(tv_path("other"), json=elsewhere)
    assert resp.status in (200, 201)
    await create(cluster, new_tv())
    await operator.start()
    await wait_for(lambda: phase(cluster) == "Queued", what="the watched namespace served")
    await asyncio_sleep(1.5)
    [other] = cluster.objects_of(TV, "other")
    assert not other.get("status")
    assert cluster.objects_of("batch/v1/jobs", "other") == []


async def test_metrics_and_liveness(cluster: Cluster, operator: OperatorProcess) -> None:
    import aiohttp

    await create(cluster, new_tv())
    await operator.start()
    [job] = await wait_for(lambda: jobs(cluster), what="the Job")
    pod = await admit_and_run(cluster, job)
    await complete(cluster, job, pod)
    await wait_for(lambda: phase(cluster) == "Succeeded", what="phase Succeeded")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{operator.health_port}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"http://127.0.0.1:{operator.metrics_port}/metrics") as resp:
            text = await resp.text()
    assert 'multitalk_runs_total{engine="multitalk",reason="Rendered",result="succeeded"} 1.0' in text
    assert 'multitalk_talkingvideos{phase="Succeeded"} 1.0' in text
    assert "multitalk_jobs_created_total 1.0" in text
    assert "multitalk_render_seconds_bucket" in text
