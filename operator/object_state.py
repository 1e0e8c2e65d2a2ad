"""What the operator holds about one TalkingVideo: its mirrored body, Job and pods, and what
the reconciles and the resync need to remember between triggers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from multitalk.operator import job_builder
from multitalk.operator.cleanup import PendingCleanup
from multitalk.operator.conditions import ApiFailure
from multitalk.operator.mirror import JobBody, PodBody, TalkingVideoBody
from multitalk.operator.reasons import Phase
from multitalk.operator.status_types import TalkingVideoStatus, read_status

Key = tuple[str, str]  # (namespace, name)


@dataclass
class ObjectState:
    """Everything the operator holds about one TalkingVideo."""

    tv: TalkingVideoBody | None = None  # None until its watch event arrived
    job: JobBody | None = None
    pods: dict[str, PodBody] = field(default_factory=dict)  # the Job's pods by uid
    # True once the pod mirror is complete for `job`: this process created the Job (the
    # watch sees every pod from then on), or listed its pods once.
    pods_known: bool = False
    # The last status written, as sent (fresher than the watch's echo, so the mirror drops
    # the echo), and what the resync loop needs of it.
    written: dict[str, Any] | None = None
    phase: Phase | None = None
    terminal: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queued: bool = False  # a reconcile is scheduled that has not read the mirrors yet
    last_resync: float = 0.0  # monotonic
    last_progress: float = 0.0
    # What the last reconcile could not do: the resync retries it (even on a terminal
    # object), and a failure is reported once, not at every retry.
    failed_calls: tuple[ApiFailure, ...] = ()
    # Clean-ups of deleted objects of this name (by their uid), each waiting for its render's
    # Job and pods to be gone.
    cleanups: dict[str, PendingCleanup] = field(default_factory=dict)

    def status(self) -> TalkingVideoStatus:
        if self.written is not None:
            return read_status(self.written)
        return read_status(self.tv.get("status") if self.tv is not None else None)

    def remember(self, status: TalkingVideoStatus) -> None:
        self.phase, self.terminal = status.phase, status.terminal

    def job_of(self, uid: str) -> list[JobBody]:
        """The mirrored Job of the TalkingVideo with this uid (its label), if that is the one mirrored."""
        if self.job is None or owner_uid(self.job) != uid:
            return []
        return [self.job]

    def pods_of(self, uid: str | None) -> list[PodBody]:
        """The mirrored pods of the TalkingVideo with this uid (their label)."""
        return [p for p in self.pods.values() if owner_uid(p) == uid]


def owner_uid(child: JobBody | PodBody) -> str | None:
    """The uid of the TalkingVideo a Job or pod was made for (its label)."""
    return (child["metadata"].get("labels") or {}).get(job_builder.LABEL_TV_UID)


def may_have_pods(job: JobBody) -> bool:
    """A Job still waiting in its queue has never had pods: nothing to list (most objects, at scale)."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    never_ran = not any(status.get(k) for k in ("startTime", "active", "failed", "succeeded", "terminating"))
    return not (spec.get("suspend") and never_ran)
