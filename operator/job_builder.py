"""TalkingVideo + operator settings -> the batch/v1 Job manifest that renders it (pure).

The Job is created once. Afterwards the operator patches only its `spec.suspend`, and
only without a Kueue queue (spec.suspend of the TalkingVideo; with a queue Kueue owns it
and may add node selectors); ownerReferences are added by the reconciler. Everything a
user might tune is passed through from the spec, everything else is the secure default:
restricted Pod Security, no API token, read-only root filesystem with an emptyDir for
scratch. `build_cleanup_job` is the small Job that removes an unfinished render's resume
checkpoints once its TalkingVideo is deleted (cleanup.py decides when).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from multitalk.operator import api
from multitalk.operator.settings import OperatorSettings
from multitalk.runner.errors import PERMANENT_EXIT_CODES
from multitalk.runner.request import MODEL_DIR_ENV, REQUEST_ENV, canonical_hash, canonical_json
from multitalk.runner.result import RESULT_PATH_ENV, TERMINATION_LOG

CONTAINER = "runner"
SCRATCH_PATH = "/tmp"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
# Our own labels and annotations on children (Job and pods).
MANAGER = "multitalk-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TV_UID = f"{api.GROUP}/talkingvideo-uid"
ANNOTATION_TV_NAME = f"{api.GROUP}/talkingvideo"
ANNOTATION_REQUEST_HASH = f"{api.GROUP}/request-sha256"
ANNOTATION_GENERATION = f"{api.GROUP}/generation"
# On a clean-up Job, the deleted TalkingVideo's name. Not ANNOTATION_TV_NAME: the watches
# would take the clean-up Job and its pod for the render's.
ANNOTATION_CLEANUP_OF = f"{api.GROUP}/cleanup-of"
CLEANUP_NAME = "multitalk-cleanup"  # its app.kubernetes.io/name
CLEANUP_SUFFIX = "-cleanup"
CLEANUP_TTL_SECONDS = 600  # the Job and its pod go this long after it ends (kubectl logs until then)
CLEANUP_DEADLINE_SECONDS = 600
CLEANUP_BACKOFF_LIMIT = 3  # S3 hiccups; exits 2, 3 and 5 fail at once
# Listing and deleting a prefix: Python with boto3, no GPU, no model.
CLEANUP_RESOURCES = {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}}

# Labels copied from a TalkingVideo to its Job and pod (plus settings.copy_label_keys).
DEFAULT_COPY_LABELS = ("app.kubernetes.io/part-of", "team", "owner", "cost-center", "project")
# Never copied, even when configured: GitOps tools would prune or adopt the children,
# and Kueue / our own keys have meanings of their own.
DENIED_LABEL_PREFIXES = ("argocd.argoproj.io/", "kueue.x-k8s.io/", f"{api.GROUP}/", "batch.kubernetes.io/")
DENIED_LABELS = ("app.kubernetes.io/instance", LABEL_NAME, LABEL_MANAGED_BY, "job-name", "controller-uid")

GPU_RESOURCE = "nvidia.com/gpu"
_MAX_NAME = 63  # Job names become pod label values (batch.kubernetes.io/job-name)
# Several GPUs: NCCL's intra-node transport needs a real /dev/shm (the container default is 64 MiB).
SHM_PATH = "/dev/shm"
SHM_SIZE = "8Gi"  # counted against the container's memory limit
RANK_PORT = 29500  # the ranks rendezvous on the pod's loopback


def job_name(tv_name: str, tv_uid: str, suffix: str = "") -> str:
    """Deterministic child name: readable prefix + hash of the owner's identity (+ suffix).

    The uid makes a re-created TalkingVideo of the same name get a new Job instead of
    colliding with the old one's Job while the garbage collector removes it.
    """
    digest = hashlib.sha256(f"{tv_name}/{tv_uid}".encode()).hexdigest()[:8]
    prefix = tv_name[: _MAX_NAME - len(digest) - 1 - len(suffix)].rstrip("-.")
    return f"{prefix}-{digest}{suffix}"


def request_json(spec: api.TalkingVideoSpec) -> str:
    """The request's environment variable (the runner's canonical form, so its hash is the runner's)."""
    return canonical_json(api.render_request(spec))


def request_hash(spec: api.TalkingVideoSpec) -> str:
    """The runner's request hash (its resume key) of this spec's request."""
    return canonical_hash(api.render_request(spec))


def copied_labels(labels: Mapping[str, str] | None, extra_keys: list[str]) -> dict[str, str]:
    allowed = set(DEFAULT_COPY_LABELS) | set(extra_keys)
    out = {}
    for key, value in (labels or {}).items():
        if key not in allowed or key in DENIED_LABELS or key.startswith(DENIED_LABEL_PREFIXES):
            continue
        out[key] = value
    return out


def _resources(spec: api.TalkingVideoSpec, settings: OperatorSettings) -> dict[str, Any]:
    if spec.runner.resources is not None and (spec.runner.resources.limits or spec.runner.resources.requests):
        data: Any = spec.runner.resources.wire()
    else:
        data = json.loads(settings.runner_resources)
    if not isinstance(data, dict):
        raise ValueError("MULTITALK_RUNNER_RESOURCES must be a JSON object (a ResourceRequirements)")
    gpus = spec.runner.gpus
    if gpus is not None:  # runner.gpus decides the GPU count, whatever resources say
        data = {kind: dict(values) for kind, values in data.items()}
        data.setdefault("limits", {})[GPU_RESOURCE] = str(gpus)
        if GPU_RESOURCE in data.get("requests", {}):
            data["requests"][GPU_RESOURCE] = str(gpus)
    return dict(data)


def _multi_gpu(spec: api.TalkingVideoSpec) -> bool:
    return (spec.runner.gpus or 1) > 1


def _rank_env(spec: api.TalkingVideoSpec) -> list[dict[str, Any]]:
    """torch's rendezvous variables: the runner (rank 0) starts WORLD_SIZE - 1 more ranks in the pod."""
    if not _multi_gpu(spec):
        return []
    return [
        {"name": "WORLD_SIZE", "value": str(spec.runner.gpus)},
        {"name": "MASTER_ADDR", "value": "127.0.0.1"},
        {"name": "MASTER_PORT", "value": str(RANK_PORT)},
    ]


def _wants_gpu(resources: Mapping[str, Any]) -> bool:
    return any(GPU_RESOURCE in (resources.get(kind) or {}) for kind in ("limits", "requests"))


def _env(spec: api.TalkingVideoSpec, settings: OperatorSettings, model_path: str | None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": REQUEST_ENV, "value": request_json(spec)},
        {"name": RESULT_PATH_ENV, "value": TERMINATION_LOG},
        # Read-only root filesystem: every cache and temp file lives in the scratch emptyDir.
        {"name": "HOME", "value": SCRATCH_PATH},
        {"name": "TMPDIR", "value": SCRATCH_PATH},
        {"name": "XDG_CACHE_HOME", "value": f"{SCRATCH_PATH}/.cache"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if model_path:
        env.append({"name": MODEL_DIR_ENV, "value": model_path})
    env.extend(_storage_env(spec, settings))
    env.extend(_rank_env(spec))
    env.extend(var.wire() for var in spec.runner.env)
    return env


def _storage_env(spec: api.TalkingVideoSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    secret = spec.storage.secret_ref.name if spec.storage.secret_ref else settings.storage_secret_name
    if secret:
        # The operator never reads the Secret: the kubelet resolves it for the pod.
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    endpoint = spec.storage.endpoint or settings.storage_endpoint
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": endpoint})
    region = spec.storage.region or settings.storage_region
    if region:
        env.append({"name": "AWS_REGION", "value": region})
    return env


_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pod_security(settings: OperatorSettings) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.runner_run_as_user,
        "runAsGroup": settings.runner_run_as_user,
        "fsGroup": settings.runner_run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container(spec: api.TalkingVideoSpec, settings: OperatorSettings, resources: dict[str, Any]) -> dict[str, Any]:
    claim = spec.model_cache.claim_name if spec.model_cache else settings.model_cache_claim
    mount_path = spec.model_cache.mount_path if spec.model_cache else settings.model_cache_mount_path
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": SCRATCH_PATH}]
    if claim:
        mounts.append({"name": "models", "mountPath": mount_path, "readOnly": True})
    if _multi_gpu(spec):
        mounts.append({"name": "dshm", "mountPath": SHM_PATH})
    return {
        "name": CONTAINER,
        "image": spec.runner.image or settings.runner_image,
        "imagePullPolicy": settings.runner_image_pull_policy,
        "command": ["multitalk-runner", "render"],
        "env": _env(spec, settings, mount_path if claim else None),
        "resources": resources,
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        # A runner that dies before writing its result leaves the log tail instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(_CONTAINER_SECURITY),
    }


def _pod_spec(spec: api.TalkingVideoSpec, settings: OperatorSettings) -> dict[str, Any]:
    resources = _resources(spec, settings)
    claim = spec.model_cache.claim_name if spec.model_cache else settings.model_cache_claim
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {}}]
    if claim:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    if _multi_gpu(spec):
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}})
    tolerations = [t.wire() for t in spec.scheduling.tolerations]
    if _wants_gpu(resources) and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(settings),
        "containers": [_container(spec, settings, resources)],
        "volumes": volumes,
    }
    scheduling = spec.scheduling
    if scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(scheduling.node_selector)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if scheduling.affinity:
        pod_spec["affinity"] = dict(scheduling.affinity)
    if scheduling.priority_class_name:
        pod_spec["priorityClassName"] = scheduling.priority_class_name
    runtime_class = scheduling.runtime_class_name or settings.runtime_class_name
    if runtime_class:
        pod_spec["runtimeClassName"] = runtime_class
    return pod_spec


def _job_spec(
    spec: api.TalkingVideoSpec, settings: OperatorSettings, queue: str | None, template: dict[str, Any]
) -> dict[str, Any]:
    job_spec: dict[str, Any] = {
        # Kueue admits a queued Job by un-suspending it; without a queue, spec.suspend holds it.
        "suspend": bool(queue) or spec.suspend,
        "backoffLimit": spec.backoff_limit,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [int(code) for code in PERMANENT_EXIT_CODES],
                    },
                },
                # status is defaulted to True by the API server, but required by the OpenAPI of 1.30-1.34.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        "template": template,
    }
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return job_spec


def build_job(tv: Mapping[str, Any], spec: api.TalkingVideoSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The Job manifest for one TalkingVideo (without ownerReferences)."""
    meta = tv.get("metadata", {})
    name, namespace, uid = meta["name"], meta.get("namespace"), meta.get("uid", "")
    labels = {
        **copied_labels(meta.get("labels"), settings.copy_label_keys),
        LABEL_NAME: "multitalk-runner",
        LABEL_MANAGED_BY: MANAGER,
        LABEL_TV_UID: uid,
    }
    queue = spec.scheduling.queue_name or settings.queue_name
    job_labels = {**labels, KUEUE_QUEUE_LABEL: queue} if queue else labels
    # Pods carry the owner's name too: the operator's pod watch finds their TalkingVideo by it.
    template = {
        "metadata": {"labels": labels, "annotations": {ANNOTATION_TV_NAME: name}},
        "spec": _pod_spec(spec, settings),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, uid),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {
                ANNOTATION_TV_NAME: name,
                ANNOTATION_REQUEST_HASH: request_hash(spec),
                ANNOTATION_GENERATION: str(meta.get("generation", 1)),
            },
        },
        "spec": _job_spec(spec, settings, queue, template),
    }


def build_cleanup_job(tv: Mapping[str, Any], spec: api.TalkingVideoSpec, settings: OperatorSettings) -> dict[str, Any]:
    """The Job that removes the resume checkpoints of a deleted TalkingVideo's unfinished render:
    `multitalk-runner clean-scratch` in the runner image with the render's request and storage
    (the operator holds no S3 credentials; the kubelet hands the Secret to this pod as to the
    render's). No owner (the TalkingVideo is gone), so ttlSecondsAfterFinished removes it; no
    queue, GPU, model cache, node selector or tolerations: it is a small CPU pod."""
    meta = tv.get("metadata", {})
    name, namespace, uid = meta["name"], meta.get("namespace"), meta.get("uid", "")
    labels = {
        **copied_labels(meta.get("labels"), settings.copy_label_keys),
        LABEL_NAME: CLEANUP_NAME,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_TV_UID: uid,
    }
    env = [
        {"name": REQUEST_ENV, "value": request_json(spec)},
        {"name": "HOME", "value": SCRATCH_PATH},
        {"name": "TMPDIR", "value": SCRATCH_PATH},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        *_storage_env(spec, settings),
        *(var.wire() for var in spec.runner.env),  # a CA bundle or proxy for S3 may be set here
    ]
    container = {
        "name": CONTAINER,
        "image": spec.runner.image or settings.runner_image,
        "imagePullPolicy": settings.runner_image_pull_policy,
        "command": ["multitalk-runner", "clean-scratch"],
        "env": env,
        "resources": CLEANUP_RESOURCES,
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_PATH}],
        "securityContext": dict(_CONTAINER_SECURITY),
    }
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(settings),
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, uid, CLEANUP_SUFFIX),
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_CLEANUP_OF: name, ANNOTATION_REQUEST_HASH: request_hash(spec)},
        },
        "spec": {
            "suspend": False,
            "backoffLimit": CLEANUP_BACKOFF_LIMIT,
            "activeDeadlineSeconds": CLEANUP_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": CLEANUP_TTL_SECONDS,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [int(code) for code in PERMANENT_EXIT_CODES],
                        },
                    },
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
