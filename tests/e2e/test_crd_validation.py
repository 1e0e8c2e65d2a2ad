"""The TalkingVideo CRD on a real API server: Established, explained, and bad objects refused at apply."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cluster.session import Cluster
from cluster.waiting import eventually

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "talkingvideos.multitalk.dev.yaml"

GOOD: dict[str, Any] = {
    "apiVersion": "multitalk.dev/v1alpha1",
    "kind": "TalkingVideo",
    "metadata": {"name": "good"},
    "spec": {
        "engine": "lite",
        "image": "s3://media/face.jpg",
        "speakers": [{"audio": "s3://media/voice.wav", "bbox": [10, 20, 200, 180]}],
        "output": {"uri": "s3://media/out/hello.mp4"},
    },
}


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        obj = obj[int(key)] if key.isdigit() else obj.setdefault(key, {})  # type: ignore[index]
    last = keys[-1]
    if value is _DELETE:
        obj.pop(last)
    else:
        obj[last] = value


_DELETE = object()

# (where, value, words the refusal must contain: the field path and what is allowed)
BAD: list[tuple[str, Any, list[str]]] = [
    ("spec.engine", "turbo", ["spec.engine", "Unsupported value", "lite"]),
    ("spec.speakers", [], ["spec.speakers", "at least 1"]),
    (
        "spec.speakers",
        [{"audio": "s3://m/a.wav"}, {"audio": "s3://m/b.wav"}, {"audio": "s3://m/c.wav"}],
        ["spec.speakers", "at most 2"],
    ),
    ("spec.speakers.0.audio", "/home/me/voice.wav", ["spec.speakers[0].audio", "should match"]),
    ("spec.speakers.0.bbox", [1, 2, 3], ["spec.speakers[0].bbox", "at least 4"]),
    ("spec.speakers.0.bbox", [200, 20, 10, 180], ["spec.speakers[0].bbox", "top < bottom"]),
    ("spec.speakers.0.bbox", [-5, 20, 200, 180], ["spec.speakers[0].bbox", ">= 0"]),
    ("spec.image", "ftp://host/face.jpg", ["spec.image", "should match"]),
    ("spec.output.uri", "s3://media/out/hello.avi", ["spec.output.uri", "should match"]),
    ("spec.output", _DELETE, ["spec.output", "Required value"]),
    ("spec.video", {"width": 32}, ["spec.video.width", "greater than or equal to 64"]),
    ("spec.video", {"fps": 120}, ["spec.video.fps", "less than or equal to 60"]),
    (
        "spec.video",
        {"maxDurationSeconds": 10, "durationSeconds": 20},
        ["spec.video.durationSeconds", "must not exceed maxDurationSeconds"],
    ),
    ("spec.sampling", {"steps": 0}, ["spec.sampling.steps", "greater than or equal to 1"]),
    ("spec.sampling", {"loras": [{"path": "../etc/passwd.safetensors"}]}, ["spec.sampling.loras[0].path"]),
    ("spec.backoffLimit", 99, ["spec.backoffLimit", "less than or equal to 10"]),
    ("spec.pendingDeadlineSeconds", 5, ["spec.pendingDeadlineSeconds", "greater than or equal to 30"]),
    ("spec.audioMode", "shouting", ["spec.audioMode", "Unsupported value"]),
    ("spec.allowFallback", True, ["spec.allowFallback", "needs an explicit engine"]),
    ("spec.storage", {"endpoint": "minio:9000"}, ["spec.storage.endpoint", "should match"]),
    (
        "spec.runner",
        {"env": [{"name": "MULTITALK_REQUEST", "value": "{}"}]},
        ["spec.runner.env[0].name", "set by the operator"],
    ),
    ("spec.scheduling", {"queueName": "GPU Queue"}, ["spec.scheduling.queueName", "should match"]),
]


def bad_object(index: int, where: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(GOOD)
    obj["metadata"]["name"] = f"bad-{index}"
    if where == "spec.allowFallback":
        obj["spec"]["engine"] = "auto"
    _set(obj, where, value)
    return obj


@pytest.fixture(scope="module")
def crd(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    if cluster.local:
        # The chart installs the CRD (Helm refuses to adopt one applied by hand before it).
        request.getfixturevalue("operator")
    elif cluster.kubectl("get", "crd/talkingvideos.multitalk.dev", check=False).returncode != 0:
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/talkingvideos.multitalk.dev", "--timeout=60s")
    return "talkingvideos.multitalk.dev"


def test_crd_is_established_and_explained(cluster: Cluster, crd: str) -> None:
    # The OpenAPI document of a new CRD is published a moment after it is Established.
    explained = eventually(
        lambda: cluster.kubectl("explain", "talkingvideo.spec", check=False).stdout, 30, "kubectl explain"
    )
    assert "speakers" in explained and "output" in explained and "engine" in explained
    field = cluster.kubectl("explain", "tv.spec.speakers.bbox").stdout
    assert "top" in field.lower()


def test_good_object_applies_and_short_name_lists_it(cluster: Cluster, namespace: str, crd: str) -> None:
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(GOOD))
    listed = cluster.kubectl("get", "tv", "-n", namespace, "-o", "name").stdout.split()
    assert listed == ["talkingvideo.multitalk.dev/good"]
    in_category = cluster.kubectl("get", "multitalk", "-n", namespace, "-o", "name").stdout.split()
    assert in_category == listed
    in_all = cluster.kubectl("get", "all", "-n", namespace, "-o", "name").stdout
    assert "talkingvideo" not in in_all


@pytest.mark.parametrize(
    ("index", "where", "value", "words"), [(i, *b) for i, b in enumerate(BAD)], ids=[b[0] for b in BAD]
)
def test_bad_object_is_refused_at_apply_naming_the_field(
    cluster: Cluster, namespace: str, crd: str, index: int, where: str, value: Any, words: list[str]
) -> None:
    refused = cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(bad_object(index, where, value)),
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0, f"{where}={value!r} was accepted"
    for word in words:
        assert word in refused.stderr, f"{word!r} not in refusal:\n{refused.stderr}"


def test_render_fields_are_immutable_but_suspend_is_not(cluster: Cluster, namespace: str, crd: str) -> None:
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(GOOD))
    changed = copy.deepcopy(GOOD)
    changed["spec"]["output"]["uri"] = "s3://media/out/other.mp4"
    refused = cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False
    )
    assert refused.returncode != 0 and "spec.output" in refused.stderr and "immutable" in refused.stderr
    suspended = copy.deepcopy(GOOD)
    suspended["spec"]["suspend"] = True
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(suspended))
