"""How the Reconciler schedules reconciles at scale (no API server: `_reconcile` is replaced).

- a reconcile runs in a fresh context: kopf's context variables (the watch event's cause,
  its whole body) are not held by a task waiting for a slot;
- triggers arriving while a reconcile waits for a slot join it;
- an object with a Job is reconciled while objects still waiting for theirs fill every slot.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import cast

import pytest

from multitalk.operator import reconciler as reconciler_module
from multitalk.operator.api_calls import API_CONCURRENCY
from multitalk.operator.kube import Kube
from multitalk.operator.mirror import JobBody, TalkingVideoBody
from multitalk.operator.object_state import Key, ObjectState
from multitalk.operator.reconciler import Reconciler
from multitalk.operator.settings import OperatorSettings

pytestmark = pytest.mark.asyncio
CAUSE: contextvars.ContextVar[str] = contextvars.ContextVar("cause")


def make(monkeypatch: pytest.MonkeyPatch) -> tuple[Reconciler, list[Key], asyncio.Event, list[str]]:
    monkeypatch.setattr(reconciler_module, "RECONCILE_DELAY_SECONDS", 0.0)
    made = Reconciler(cast(Kube, None), OperatorSettings())
    ran: list[Key] = []
    seen: list[str] = []  # CAUSE as each reconcile sees it
    release = asyncio.Event()

    async def fake(key: Key, state: ObjectState, read_progress: bool) -> None:
        ran.append(key)
        seen.append(CAUSE.get("unset"))
        if state.job is None:
            await release.wait()  # a Job create that takes its time

    monkeypatch.setattr(made, "_reconcile", fake)
    return made, ran, release, seen


def add(made: Reconciler, name: str, with_job: bool) -> Key:
    key = ("media", name)
    state = made._state(key)
    state.tv = cast(TalkingVideoBody, {"metadata": {"name": name, "namespace": "media", "uid": name}, "spec": {}})
    if with_job:
        state.job = cast(JobBody, {"metadata": {"name": name}, "spec": {}, "status": {}})
    return key


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_completions_do_not_wait_behind_job_creates(monkeypatch: pytest.MonkeyPatch) -> None:
    made, ran, release, seen = make(monkeypatch)
    CAUSE.set("a kopf watch event")
    new = [add(made, f"new-{i}", with_job=False) for i in range(3 * API_CONCURRENCY)]
    for key in new:
        made.nudge(key)
    await settle()
    assert len(ran) == 2 * API_CONCURRENCY  # every create slot taken, the rest wait
    done = add(made, "done", with_job=True)
    made.nudge(done)
    await settle()
    assert done in ran
    made.nudge(new[-1])  # a trigger for an object still waiting joins its reconcile
    release.set()
    await settle()
    assert sorted(ran) == sorted([*new, done])
    assert not made._tasks
    assert set(seen) == {"unset"}  # not the context of the handler that nudged


async def test_a_trigger_during_a_reconcile_schedules_another(monkeypatch: pytest.MonkeyPatch) -> None:
    made, ran, release, _ = make(monkeypatch)
    key = add(made, "one", with_job=False)
    made.nudge(key)
    await settle()
    made.nudge(key)  # the running reconcile read the mirrors before this trigger
    release.set()
    await settle()
    assert ran == [key, key]
