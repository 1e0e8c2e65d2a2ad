"""Operator configuration, read from MULTITALK_* environment variables (set by the Helm chart).

Built once, in main.py, and passed to everything that needs it (kopf's memo carries it to
the startup handler): importing a module never reads the environment.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from multitalk.runner.request import DEFAULT_MODEL_DIR


def _split(cls: type, value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class OperatorSettings(BaseSettings):
    """Cluster-wide defaults; a TalkingVideo's own fields always win."""

    model_config = SettingsConfigDict(env_prefix="MULTITALK_", extra="ignore")

    # Comma-separated namespaces to watch; empty means the whole cluster.
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    runner_image: str = "multitalk-runner:0.1.0"
    runner_image_pull_policy: str = "IfNotPresent"
    # JSON of a ResourceRequirements used when spec.runner.resources is empty.
    runner_resources: str = '{"limits": {"nvidia.com/gpu": "1"}}'
    storage_endpoint: str | None = None
    storage_region: str | None = None
    storage_secret_name: str | None = None  # Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    model_cache_claim: str | None = None
    model_cache_mount_path: str = DEFAULT_MODEL_DIR
    queue_name: str | None = None  # default Kueue LocalQueue
    runtime_class_name: str | None = None
    metrics_port: int = 8080
    health_port: int = 8081
    progress_poll_seconds: float = 15.0
    resync_seconds: float = 60.0
    watch_server_timeout: int = 300
    watch_client_timeout: int = 330
    # UID/GID the runner pod runs as (Pod Security "restricted" needs a non-root user).
    runner_run_as_user: int = 10001
    # Bytes of the running pod's log read for the progress line.
    progress_log_bytes: int = 4096
    # A deleted TalkingVideo whose render did not finish gets a Job that removes its resume
    # checkpoints (operator/cleanup.py); off: only the storage's lifecycle rule expires them.
    cleanup_on_delete: bool = True
    # Extra label keys (beyond the built-in allow-list) copied from a TalkingVideo to its Job.
    copy_label_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)

    _split_lists = field_validator("namespaces", "copy_label_keys", mode="before")(_split)
