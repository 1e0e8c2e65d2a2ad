"""Prometheus metrics of the operator (served by prometheus_client on settings.metrics_port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from multitalk.operator.reasons import Phase
from multitalk.operator.status_types import TalkingVideoStatus

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS = Counter(
    "multitalk_runs_total",
    "Finished renders by engine that ran and result (succeeded/failed) and reason.",
    ["engine", "result", "reason"],
    registry=REGISTRY,
)
QUEUE_SECONDS = Histogram(
    "multitalk_queue_seconds",
    "TalkingVideo created -> runner container started.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200),
    registry=REGISTRY,
)
RENDER_SECONDS = Histogram(
    "multitalk_render_seconds",
    "Job start -> finish of finished renders, by engine.",
    ["engine"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200),
    registry=REGISTRY,
)
OBJECTS = Gauge(
    "multitalk_talkingvideos", "TalkingVideos known to the operator, by phase.", ["phase"], registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "multitalk_reconcile_seconds",
    "Time of one reconcile of one TalkingVideo (API calls included).",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "multitalk_api_errors_total", "Failed Kubernetes API calls by operation.", ["operation"], registry=REGISTRY
)
JOBS_CREATED = Counter("multitalk_jobs_created_total", "Child Jobs created.", registry=REGISTRY)
STALLED_JOBS = Gauge(
    "multitalk_stalled_jobs",
    "Jobs failed below backoffLimit that made no new pod for a while (Running reason JobStalled).",
    registry=REGISTRY,
)


class KeySet:
    """The objects for which something holds, counted into a gauge."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._keys: set[tuple[str, str]] = set()
        gauge.set(0)

    def set(self, key: tuple[str, str], holds: bool) -> None:
        if holds:
            self._keys.add(key)
        else:
            self._keys.discard(key)
        self._gauge.set(len(self._keys))


class PhaseBook:
    """The phase of every known object, mirrored into the OBJECTS gauge."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], Phase] = {}
        for name in Phase:
            OBJECTS.labels(phase=name).set(0)

    def set(self, key: tuple[str, str], phase: Phase | None) -> None:
        before = self._phases.get(key)
        if before == phase:
            return
        if before is not None:
            OBJECTS.labels(phase=before).dec()
        if phase is None:
            self._phases.pop(key, None)
        else:
            self._phases[key] = phase
            OBJECTS.labels(phase=phase).inc()


def count_run(status: TalkingVideoStatus, reason: str) -> None:
    """A render ended (Complete or Failed turned True): count it and observe its times."""
    engine = (status.engine.name if status.engine else None) or "unknown"
    result = "succeeded" if status.phase == Phase.SUCCEEDED else "failed"
    RUNS.labels(engine=engine, result=result, reason=reason).inc()
    if status.timings is not None and status.timings.queue_seconds is not None:
        QUEUE_SECONDS.observe(status.timings.queue_seconds)
    if status.duration_seconds is not None:
        RENDER_SECONDS.labels(engine=engine).observe(status.duration_seconds)


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)
