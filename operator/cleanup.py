"""Does a deleted TalkingVideo get a clean-up Job? (pure; the reconciler creates it.)

A render that did not finish leaves its resume checkpoints under `<output folder>/
.multitalk-resume/<request sha256>/` (docs/runner.md, Resuming). The operator holds no S3
credentials, so it removes them through a small Job in the runner image
(`job_builder.build_cleanup_job`). Nothing on the normal path: a render that succeeded has
removed its checkpoints itself, and no finalizer is added to any object; the decision is
taken on the watch's DELETED event, from the last state the operator saw. The clean-up Job
is created only once the render's Job and pods are gone, so no runner still writing a
checkpoint (a pod in its termination grace period) outlives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multitalk.operator import api, job_builder
from multitalk.operator.reasons import Phase
from multitalk.operator.settings import OperatorSettings
from multitalk.operator.status_types import TalkingVideoStatus


@dataclass(frozen=True)
class PendingCleanup:
    """A clean-up Job waiting for the deleted TalkingVideo's render Job and pods to go."""

    uid: str  # of the deleted TalkingVideo: its children carry it as a label
    manifest: dict[str, Any]


def may_have_checkpoints(status: TalkingVideoStatus, runner_seen: bool) -> bool:
    """Could this render have left checkpoints? It ran (a runner pod started, by the status or
    the mirror) and did not succeed (a publish removes them)."""
    if status.phase == Phase.SUCCEEDED:
        return False
    return runner_seen or status.start_time is not None or status.pod is not None or status.resume is not None


def cleanup_for(
    body: dict[str, Any], status: TalkingVideoStatus, runner_seen: bool, settings: OperatorSettings
) -> PendingCleanup | None:
    """The clean-up for a TalkingVideo just deleted (its last body), or None when none is needed."""
    uid = (body.get("metadata") or {}).get("uid")
    if not uid or not may_have_checkpoints(status, runner_seen):
        return None
    try:
        spec = api.parse_spec(body.get("spec"))
    except api.InvalidSpecError:
        return None  # an invalid spec never had a Job
    return PendingCleanup(uid, job_builder.build_cleanup_job(body, spec, settings))
