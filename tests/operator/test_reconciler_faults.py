"""The Reconciler in this process against KMock's emulator over HTTP, fed its watch events by
hand so that a stale event or a refused request happens exactly when the test says
(issue 16 items 1 and 4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio
from kmock_cluster import Cluster
from kmock_harness import tv_path, write_kubeconfig
from test_operator_kmock import conditions, create, job_path, jobs, new_tv, patch, the_tv

from multitalk.operator import metrics
from multitalk.operator.kube import Kube
from multitalk.operator.reconciler import Reconciler
from multitalk.operator.settings import OperatorSettings
from multitalk.operator.times import format_time

pytestmark = pytest.mark.asyncio
KEY = ("media", "hello")


@pytest_asyncio.fixture()
async def reconciler(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Reconciler]:
    # The operator's own credentials path (kopf's KUBECONFIG login), pointed at the emulator.
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(cluster.url).rstrip("/"))))
    made = Reconciler(Kube(connections=4), OperatorSettings(runner_image="registry.example/multitalk-runner:test"))
    try:
        yield made
    finally:
        for task in list(made._tasks):
            task.cancel()
        await made.kube.close()


def job_posts(cluster: Cluster) -> int:
    return len(cluster["post", kmock.resource("batch/v1/jobs")])


def api_errors(call: str) -> float:
    value = metrics.REGISTRY.get_sample_value("multitalk_api_errors_total", {"operation": call})
    return value or 0.0


async def test_no_job_for_an_object_deleted_before_its_event_is_handled(
    cluster: Cluster, reconciler: Reconciler
) -> None:
    body = await create(cluster, new_tv())
    reconciler.on_talkingvideo(KEY, body, deleted=False)  # the "added" event, handled late:
    resp = await cluster.delete(tv_path(*KEY))  # the object is gone before its reconcile
    assert resp.status == 200
    assert await reconciler.reconcile(KEY) is None
    assert job_posts(cluster) == 0 and jobs(cluster) == []


async def test_no_job_for_a_stale_event_of_a_re_created_object(cluster: Cluster, reconciler: Reconciler) -> None:
    old = await create(cluster, new_tv())
    reconciler.on_talkingvideo(KEY, old, deleted=False)
    await cluster.delete(tv_path(*KEY))
    new = await create(cluster, new_tv())  # same name, another uid
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert await reconciler.reconcile(KEY) is None
    assert job_posts(cluster) == 0
    reconciler.on_talkingvideo(KEY, new, deleted=False)  # its own event: its own Job
    await reconciler.reconcile(KEY)
    [job] = jobs(cluster)
    assert job["metadata"]["ownerReferences"][0]["uid"] == new["metadata"]["uid"]


async def test_refused_job_create_is_reported_and_retried(cluster: Cluster, reconciler: Reconciler) -> None:
    body = await create(cluster, new_tv())
    reconciler.on_talkingvideo(KEY, body, deleted=False)
    before = api_errors("create_job")
    cluster["post", kmock.resource("batch/v1/jobs")][:1] << 403  # the first try only
    await reconciler.reconcile(KEY)
    status = the_tv(cluster)["status"]
    assert status["observedGeneration"] == 1 and status["phase"] == "Pending"
    admitted = conditions(the_tv(cluster))["Admitted"]
    assert (
        admitted["reason"] == "ApiCallFailed" and "create_job" in admitted["message"] and "403" in admitted["message"]
    )
    assert api_errors("create_job") == before + 1
    await reconciler.reconcile(KEY)  # the next resync: the RBAC fixed meanwhile
    assert len(jobs(cluster)) == 1
    assert conditions(the_tv(cluster))["Admitted"]["reason"] == "QueuedInKueue"


async def test_refused_suspend_patch_is_reported_without_freezing_the_status(
    cluster: Cluster, reconciler: Reconciler
) -> None:
    """Issue 16 item 1: the Job patch failed with 403 on every resync and, raised before the
    status write, kept observedGeneration behind."""
    tv = new_tv()
    tv["spec"]["scheduling"] = {}  # no Kueue: the operator suspends the Job itself
    reconciler.on_talkingvideo(KEY, await create(cluster, tv), deleted=False)
    await reconciler.reconcile(KEY)
    [job] = jobs(cluster)
    assert job["spec"]["suspend"] is False
    await patch(cluster, tv_path(*KEY), {"spec": {"suspend": True}})
    reconciler.on_talkingvideo(KEY, the_tv(cluster), deleted=False)
    before = api_errors("patch_job")
    cluster["patch", kmock.resource("batch/v1/jobs")] << 403
    rec = await reconciler.reconcile(KEY)
    assert rec is not None and rec.job_suspend is True
    status = the_tv(cluster)["status"]
    assert status["observedGeneration"] == 2
    admitted = conditions(the_tv(cluster))["Admitted"]
    assert admitted["reason"] == "ApiCallFailed"
    assert "patch_job" in admitted["message"] and "HTTP 403" in admitted["message"]
    assert api_errors("patch_job") == before + 1
    assert reconciler.objects[KEY].failed_calls, "the resync retries it"
    # The event is posted off the object's lock: let it go out.
    for task in list(reconciler._tasks):
        await task
    events = [e for e in cluster.objects_of("v1/events", "media") if e.get("reason") == "ApiCallFailed"]
    assert events and events[0]["type"] == "Warning"


async def test_stalled_job_is_counted_in_the_gauge(cluster: Cluster, reconciler: Reconciler) -> None:
    reconciler.on_talkingvideo(KEY, await create(cluster, new_tv()), deleted=False)
    await reconciler.reconcile(KEY)
    [job] = jobs(cluster)
    name = job["metadata"]["name"]
    await patch(cluster, job_path(name), {"spec": {"suspend": False}})
    # Started 5 minutes ago (within pendingDeadlineSeconds), one attempt failed, nothing
    # active and no pod since: what was seen live for 6 minutes.
    started = format_time(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    await patch(cluster, job_path(name) + "/status", {"status": {"startTime": started, "failed": 1}})
    reconciler.on_job(KEY, await job_body(cluster, name), deleted=False)
    await reconciler.reconcile(KEY)
    assert conditions(the_tv(cluster))["Running"]["reason"] == "JobStalled"
    assert metrics.REGISTRY.get_sample_value("multitalk_stalled_jobs") == 1
    reconciler.on_talkingvideo(KEY, the_tv(cluster), deleted=True)
    assert metrics.REGISTRY.get_sample_value("multitalk_stalled_jobs") == 0


async def job_body(cluster: Cluster, name: str) -> dict[str, Any]:
    return next(j for j in jobs(cluster) if j["metadata"]["name"] == name)
