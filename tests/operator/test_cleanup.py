"""Clean-up of a deleted TalkingVideo's resume checkpoints (issue 13): the Job manifest and
the decision (pure), then the Reconciler against KMock's emulator with its watch events fed
by hand, so each child's deletion arrives exactly when the test says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from chart.pod_security import restricted_violations
from kmock_cluster import Cluster
from kmock_harness import tv_path, write_kubeconfig
from test_job_builder import tv
from test_operator_kmock import admit_and_run, complete, create, job_creates, jobs, new_tv, the_tv

from multitalk.operator import api, handlers, job_builder
from multitalk.operator.cleanup import cleanup_for, may_have_checkpoints
from multitalk.operator.kube import Kube
from multitalk.operator.reasons import Phase
from multitalk.operator.reconciler import Reconciler
from multitalk.operator.settings import OperatorSettings
from multitalk.operator.status_types import PodRef, TalkingVideoStatus
from multitalk.runner.request import REQUEST_ENV, RenderRequest, canonical_hash

KEY = ("media", "hello")
IMAGE = "registry.example/multitalk-runner:test"


def cleanup_job(obj: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    obj = obj or tv()
    return job_builder.build_cleanup_job(obj, api.parse_spec(obj["spec"]), OperatorSettings(**settings))


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- the manifest (pure) -------------------------------------------------------------------


def test_cleanup_job_runs_clean_scratch_for_the_renders_own_request() -> None:
    obj = tv()
    render = job_builder.build_job(obj, api.parse_spec(obj["spec"]), OperatorSettings())
    job = cleanup_job(obj)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["multitalk-runner", "clean-scratch"]
    assert container["image"] == render["spec"]["template"]["spec"]["containers"][0]["image"]
    # The same request, so the same scratch key, and the storage the render used.
    assert env_of(job)[REQUEST_ENV] == env_of(render)[REQUEST_ENV]
    request = RenderRequest.model_validate_json(env_of(job)[REQUEST_ENV])
    assert canonical_hash(request) == job["metadata"]["annotations"][job_builder.ANNOTATION_REQUEST_HASH]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        assert env_of(job)[key] == env_of(render)[key]


def test_cleanup_job_is_small_non_root_tokenless_and_expires() -> None:
    job = cleanup_job()
    spec = job["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["ttlSecondsAfterFinished"] == job_builder.CLEANUP_TTL_SECONDS
    assert spec["suspend"] is False and spec["backoffLimit"] == job_builder.CLEANUP_BACKOFF_LIMIT
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert job_builder.GPU_RESOURCE not in str(container["resources"])
    # A CPU pod: none of the render's placement, and no queue (Kueue would hold it).
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "runtimeClassName"):
        assert key not in pod
    assert job_builder.KUEUE_QUEUE_LABEL not in job["metadata"]["labels"]
    assert restricted_violations(pod) == []  # Pod Security "restricted", as the render's pod


def test_cleanup_job_is_not_taken_for_the_render() -> None:
    """No owner (the TalkingVideo is gone) and not the annotation the watches map to an owner."""
    obj = tv()
    job = cleanup_job(obj)
    meta = job["metadata"]
    assert "ownerReferences" not in meta
    assert job_builder.ANNOTATION_TV_NAME not in meta["annotations"]
    assert job_builder.ANNOTATION_TV_NAME not in (job["spec"]["template"]["metadata"].get("annotations") or {})
    assert meta["annotations"][job_builder.ANNOTATION_CLEANUP_OF] == "hello"
    assert meta["labels"][job_builder.LABEL_MANAGED_BY] == job_builder.MANAGER
    assert meta["labels"][job_builder.LABEL_NAME] == job_builder.CLEANUP_NAME
    uid = obj["metadata"]["uid"]
    assert meta["name"] != job_builder.job_name("hello", uid) and meta["name"].endswith("-cleanup")
    long = job_builder.job_name("x" * 253, uid, job_builder.CLEANUP_SUFFIX)
    assert len(long) <= 63 and long.endswith("-cleanup")
    assert job_builder.job_name("hello", uid, "") == job_builder.job_name("hello", uid)  # unchanged


# --- the decision (pure) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "runner_seen", "wanted"),
    [
        (TalkingVideoStatus(phase=Phase.SUCCEEDED, start_time="2026-11-25T10:01:00Z"), True, False),
        (TalkingVideoStatus(phase=Phase.RUNNING, start_time="2026-11-25T10:01:00Z"), False, True),
        (TalkingVideoStatus(phase=Phase.FAILED, pod=PodRef(name="p")), False, True),
        (TalkingVideoStatus(phase=Phase.RUNNING), True, True),  # a pod the status has not caught up with
        (TalkingVideoStatus(phase=Phase.QUEUED), False, False),  # never ran: nothing written
        (TalkingVideoStatus(phase=Phase.PENDING), False, False),
        (TalkingVideoStatus(), False, False),
    ],
    ids=["succeeded", "running", "failed", "pod-not-in-status", "queued", "pending", "no-status"],
)
def test_which_deleted_objects_get_a_cleanup(status: TalkingVideoStatus, runner_seen: bool, wanted: bool) -> None:
    assert may_have_checkpoints(status, runner_seen) is wanted


def test_an_invalid_spec_gets_no_cleanup() -> None:
    obj = tv()
    obj["spec"]["speakers"] = []
    running = TalkingVideoStatus(phase=Phase.RUNNING, start_time="2026-11-25T10:01:00Z")
    assert cleanup_for(obj, running, True, OperatorSettings()) is None
    plan = cleanup_for(tv(), running, True, OperatorSettings())
    assert plan is not None and plan.uid == tv()["metadata"]["uid"] and plan.manifest == cleanup_job()


# --- the Reconciler against the emulator ---------------------------------------------------


@pytest_asyncio.fixture()
async def reconciler(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reconciler]:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(cluster.url).rstrip("/"))))
    made = Reconciler(Kube(connections=4), OperatorSettings(runner_image=IMAGE))
    try:
        yield made
    finally:
        for task in list(made._tasks):
            task.cancel()
        await made.kube.close()


async def settled(reconciler: Reconciler) -> None:
    """Every task the reconciler spawned (coalesced reconciles, the clean-up's create) is done."""
    for _ in range(20):
        tasks = [t for t in reconciler._tasks if not t.done()]
        if not tasks:
            await asyncio.sleep(0.05)
            if not [t for t in reconciler._tasks if not t.done()]:
                return
        await asyncio.gather(*tasks, return_exceptions=True)
    raise AssertionError("the reconciler's tasks did not settle")


def cleanup_jobs(cluster: Cluster) -> list[dict[str, Any]]:
    return [j for j in jobs(cluster) if j["metadata"]["labels"].get(job_builder.LABEL_NAME) == job_builder.CLEANUP_NAME]


def requests(cluster: Cluster) -> int:
    """Every request the emulator has served so far."""
    return sum(len(cluster[method]) for method in ("get", "post", "put", "patch", "delete"))


def pods(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.objects_of("v1/pods", "media")


async def started(cluster: Cluster, reconciler: Reconciler) -> tuple[dict[str, Any], dict[str, Any]]:
    """A TalkingVideo whose Job runs a pod, every event delivered: its Job and pod."""
    reconciler.on_talkingvideo(KEY, await create(cluster, new_tv()), deleted=False)
    await reconciler.reconcile(KEY)
    [job] = jobs(cluster)
    name = await admit_and_run(cluster, job)
    job = next(j for j in jobs(cluster) if j["metadata"]["name"] == job["metadata"]["name"])
    pod = next(p for p in pods(cluster) if p["metadata"]["name"] == name)
    reconciler.on_job(KEY, job, deleted=False)
    reconciler.on_pod(KEY, pod, deleted=False)
    await settled(reconciler)
    return job, pod


@pytest.mark.asyncio
async def test_deleting_a_running_render_cleans_up_once_its_pod_is_gone(
    cluster: Cluster, reconciler: Reconciler
) -> None:
    job, pod = await started(cluster, reconciler)
    last = the_tv(cluster)
    assert last["status"]["phase"] == Phase.RUNNING
    assert (await cluster.delete(tv_path(*KEY))).status == 200
    before = requests(cluster)
    reconciler.on_talkingvideo(KEY, last, deleted=True)
    await settled(reconciler)
    assert cleanup_jobs(cluster) == [], "the runner may still write a checkpoint"
    reconciler.on_job(KEY, job, deleted=True)  # the garbage collector: the Job first
    await settled(reconciler)
    assert cleanup_jobs(cluster) == []
    reconciler.on_pod(KEY, pod, deleted=True)  # then its pod, once the kubelet has stopped it
    await settled(reconciler)

    assert requests(cluster) == before + 1  # the clean-up costs its Job's create, nothing else
    [made] = cleanup_jobs(cluster)
    for server_field in ("uid", "creationTimestamp", "resourceVersion", "generation"):
        made["metadata"].pop(server_field, None)
    assert made == job_builder.build_cleanup_job(
        last, api.parse_spec(last["spec"]), OperatorSettings(runner_image=IMAGE)
    )
    assert KEY not in reconciler.objects  # nothing held for it any more
    # The watches map neither the clean-up Job nor its pod to an object (handlers.py): ignored.
    assert handlers._owner("media", made["metadata"]) is None
    assert handlers._owner("media", made["spec"]["template"]["metadata"]) is None
    assert reconciler.owner_of_job("media", made["metadata"]["name"]) is None


@pytest.mark.asyncio
async def test_a_succeeded_render_costs_no_request_on_deletion(cluster: Cluster, reconciler: Reconciler) -> None:
    job, pod = await started(cluster, reconciler)
    await complete(cluster, job, pod["metadata"]["name"])
    job = next(j for j in jobs(cluster) if j["metadata"]["name"] == job["metadata"]["name"])
    pod = next(p for p in pods(cluster) if p["metadata"]["name"] == pod["metadata"]["name"])
    reconciler.on_pod(KEY, pod, deleted=False)
    reconciler.on_job(KEY, job, deleted=False)
    await settled(reconciler)
    last = the_tv(cluster)
    assert last["status"]["phase"] == Phase.SUCCEEDED
    assert (await cluster.delete(tv_path(*KEY))).status == 200
    before = requests(cluster)
    reconciler.on_talkingvideo(KEY, last, deleted=True)
    reconciler.on_job(KEY, job, deleted=True)
    reconciler.on_pod(KEY, pod, deleted=True)
    await settled(reconciler)
    assert requests(cluster) == before, "issue 11's budget: nothing on the normal path"
    assert cleanup_jobs(cluster) == []
    assert KEY not in reconciler.objects


@pytest.mark.asyncio
async def test_a_render_that_never_ran_gets_no_cleanup(cluster: Cluster, reconciler: Reconciler) -> None:
    reconciler.on_talkingvideo(KEY, await create(cluster, new_tv()), deleted=False)
    await reconciler.reconcile(KEY)
    [job] = jobs(cluster)  # suspended in its Kueue queue: no pod ever
    last = the_tv(cluster)
    assert last["status"]["phase"] == Phase.QUEUED
    assert (await cluster.delete(tv_path(*KEY))).status == 200
    reconciler.on_talkingvideo(KEY, last, deleted=True)
    reconciler.on_job(KEY, job, deleted=True)
    await settled(reconciler)
    assert job_creates(cluster) == 1 and cleanup_jobs(cluster) == []


@pytest.mark.asyncio
async def test_the_setting_turns_the_cleanup_off(cluster: Cluster, reconciler: Reconciler) -> None:
    reconciler.settings = OperatorSettings(runner_image=IMAGE, cleanup_on_delete=False)
    job, pod = await started(cluster, reconciler)
    last = the_tv(cluster)
    assert (await cluster.delete(tv_path(*KEY))).status == 200
    reconciler.on_talkingvideo(KEY, last, deleted=True)
    reconciler.on_job(KEY, job, deleted=True)
    reconciler.on_pod(KEY, pod, deleted=True)
    await settled(reconciler)
    assert cleanup_jobs(cluster) == [] and job_creates(cluster) == 1


@pytest.mark.asyncio
async def test_a_re_created_object_of_the_same_name_does_not_hold_up_the_cleanup(
    cluster: Cluster, reconciler: Reconciler
) -> None:
    job, pod = await started(cluster, reconciler)
    last = the_tv(cluster)
    assert (await cluster.delete(tv_path(*KEY))).status == 200
    reconciler.on_talkingvideo(KEY, last, deleted=True)
    new = await create(cluster, new_tv())  # same name, another uid, while the old pod stops
    reconciler.on_talkingvideo(KEY, new, deleted=False)
    await settled(reconciler)
    assert cleanup_jobs(cluster) == []
    reconciler.on_job(KEY, job, deleted=True)
    reconciler.on_pod(KEY, pod, deleted=True)
    await settled(reconciler)
    [made] = cleanup_jobs(cluster)
    assert made["metadata"]["labels"][job_builder.LABEL_TV_UID] == last["metadata"]["uid"]
    # The new object got its own render Job, and keeps it.
    renders = [j for j in jobs(cluster) if j not in cleanup_jobs(cluster)]
    assert [j["metadata"]["labels"][job_builder.LABEL_TV_UID] for j in renders] == [new["metadata"]["uid"]]
    assert reconciler.objects[KEY].tv is not None and not reconciler.objects[KEY].cleanups
