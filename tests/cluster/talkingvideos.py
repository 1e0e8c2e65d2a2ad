"""TalkingVideo helpers for cluster tests and benchmarks: build, apply, read, wait."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from cluster.session import Cluster
from cluster.waiting import eventually

GROUP, VERSION, PLURAL = "multitalk.dev", "v1alpha1", "talkingvideos"


def talking_video(name: str, bucket: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "engine": "placeholder",
        "image": f"s3://{bucket}/in/portrait.jpg",
        "speakers": [{"audio": f"s3://{bucket}/in/hello.wav"}],
        "video": {"width": 128, "height": 128, "fps": 25},
        "output": {"uri": f"s3://{bucket}/out/{name}.mp4"},
        "backoffLimit": 0,
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TalkingVideo", "metadata": {"name": name}, "spec": body}


def apply(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(obj))


def get_tv(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    custom = client.CustomObjectsApi(cluster.api)
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


def wait_phase(
    cluster: Cluster, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 120
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        tv = get_tv(cluster, namespace, name)
        return tv if (tv.get("status") or {}).get("phase") in phases else None

    try:
        found: dict[str, Any] = eventually(reached, timeout, f"{namespace}/{name} to reach {phases}")
        return found
    except AssertionError as error:
        raise AssertionError(f"{error}; status: {json.dumps(get_tv(cluster, namespace, name).get('status'))}") from None


def jobs_of(cluster: Cluster, namespace: str) -> list[Any]:
    return list(client.BatchV1Api(cluster.api).list_namespaced_job(namespace).items)
