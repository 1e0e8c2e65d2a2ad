"""Bad TalkingVideos, one table for every judge of a spec.

The operator's own models (api.parse_spec), the CRD schema checked like the API server
does it (OpenAPI + CEL with cel-python, tests/operator/test_crd.py) and the real API
server (tests/e2e/test_crd_validation.py) must each refuse every entry, naming its field.
A rule with a Python and a CEL form (runner/rules.py) is therefore checked on both sides.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

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

DELETE = object()


@dataclass(frozen=True)
class Bad:
    where: str  # dotted path in the object; digits index lists
    value: Any  # DELETE removes the field
    field: str  # the field the refusal names, as the API server writes it
    words: tuple[str, ...] = ()  # what the API server's refusal also says (what is allowed)
    also: dict[str, Any] = field(default_factory=dict)  # other changes the case needs

    @property
    def id(self) -> str:
        return f"{self.where}={self.value!r}"[:60] if self.value is not DELETE else f"{self.where} removed"


BAD: list[Bad] = [
    Bad("spec.engine", "turbo", "spec.engine", ("Unsupported value", "lite")),
    Bad("spec.speakers", [], "spec.speakers", ("at least 1",)),
    Bad("spec.speakers", [{"audio": f"s3://m/{c}.wav"} for c in "abc"], "spec.speakers", ("at most 2",)),
    Bad("spec.speakers.0.audio", "/home/me/voice.wav", "spec.speakers[0].audio", ("should match",)),
    Bad("spec.speakers.0.audio", "file:///voice.wav", "spec.speakers[0].audio", ("should match",)),
    Bad("spec.speakers.0.bbox", [1, 2, 3], "spec.speakers[0].bbox", ("at least 4",)),
    Bad("spec.speakers.0.bbox", [200, 20, 10, 180], "spec.speakers[0].bbox", ("top < bottom",)),
    Bad("spec.speakers.0.bbox", [0, 30, 10, 20], "spec.speakers[0].bbox", ("left < right",)),
    Bad("spec.speakers.0.bbox", [-5, 20, 200, 180], "spec.speakers[0].bbox", (">= 0",)),
    Bad(
        "spec.speakers",
        [{"audio": "s3://media/a.wav"}, {"audio": "s3://media/b.wav"}],
        "spec.image",
        ("two speakers need an image",),
        also={"spec.image": DELETE},
    ),
    Bad(
        "spec.speakers",
        [{"audio": f"s3://media/{c}.wav", "bbox": [10, 20, 200, 180]} for c in "ab"],
        "spec.speakers",
        ("speakers[1].bbox is the same box as speakers[0].bbox",),
    ),
    Bad("spec.sourceVideo", "s3://media/talk.mp4", "spec.sourceVideo", ("either image", "or sourceVideo")),
    Bad(
        "spec.sourceVideo",
        "data:video/mp4;base64,AAAA",
        "spec.sourceVideo",
        ("should match",),
        also={"spec.image": DELETE},
    ),
    Bad("spec.sourceVideo", "ftp://host/talk.mp4", "spec.sourceVideo", ("should match",), also={"spec.image": DELETE}),
    Bad("spec.image", "portrait.jpg", "spec.image", ("should match",)),
    Bad("spec.image", "ftp://host/face.jpg", "spec.image", ("should match",)),
    Bad("spec.output.uri", "s3://media/out/hello.avi", "spec.output.uri", ("should match",)),
    Bad("spec.output.uri", "file:///out/hello.mp4", "spec.output.uri", ("should match",)),
    Bad("spec.output", DELETE, "spec.output", ("Required value",)),
    Bad("spec.video", {"width": 481}, "spec.video.width", ("multiple of 2",)),
    Bad("spec.video", {"width": 32}, "spec.video.width", ("greater than or equal to 64",)),
    Bad("spec.video", {"width": 4096}, "spec.video.width", ("less than or equal to 1920",)),
    Bad("spec.video", {"fps": 0}, "spec.video.fps", ("greater than or equal to 1",)),
    Bad("spec.video", {"fps": 120}, "spec.video.fps", ("less than or equal to 60",)),
    Bad(
        "spec.video",
        {"maxDurationSeconds": 10, "durationSeconds": 20},
        "spec.video.durationSeconds",
        ("must not exceed maxDurationSeconds",),
    ),
    Bad("spec.sampling", {"steps": 0}, "spec.sampling.steps", ("greater than or equal to 1",)),
    Bad("spec.sampling", {"steps": 500}, "spec.sampling.steps", ("less than or equal to 100",)),
    Bad(
        "spec.sampling",
        {"loras": [{"path": "loras/../../etc/x.safetensors"}]},
        "spec.sampling.loras[0].path",
        ("inside the model cache",),
    ),
    Bad("spec.sampling", {"loras": [{"path": "../etc/passwd.safetensors"}]}, "spec.sampling.loras[0].path"),
    Bad("spec.audioMode", "shouting", "spec.audioMode", ("Unsupported value",)),
    Bad("spec.allowFallback", True, "spec.allowFallback", ("needs an explicit engine",), also={"spec.engine": "auto"}),
    Bad("spec.backoffLimit", -1, "spec.backoffLimit", ("greater than or equal to 0",)),
    Bad("spec.backoffLimit", 99, "spec.backoffLimit", ("less than or equal to 10",)),
    Bad("spec.pendingDeadlineSeconds", 5, "spec.pendingDeadlineSeconds", ("greater than or equal to 30",)),
    Bad("spec.storage", {"endpoint": "minio:9000"}, "spec.storage.endpoint", ("should match",)),
    Bad("spec.storage", {"secretRef": {"name": "S3_Creds"}}, "spec.storage.secretRef.name", ("should match",)),
    Bad(
        "spec.runner",
        {"env": [{"name": "MULTITALK_REQUEST", "value": "{}"}]},
        "spec.runner.env[0].name",
        ("set by the operator",),
    ),
    Bad("spec.scheduling", {"queueName": "GPU Queue"}, "spec.scheduling.queueName", ("should match",)),
    Bad("spec.colour", "red", "spec.colour", ("field not declared in schema",)),  # server-side apply
]


def _set(obj: dict[str, Any], where: str, value: Any) -> None:
    keys = where.split(".")
    node: Any = obj
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    last = keys[-1]
    if value is DELETE:
        node.pop(int(last) if last.isdigit() else last)
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def bad_object(bad: Bad, name: str = "bad") -> dict[str, Any]:
    obj = copy.deepcopy(GOOD)
    obj["metadata"]["name"] = name
    for where, value in bad.also.items():
        _set(obj, where, value)
    _set(obj, bad.where, bad.value)
    return obj
