"""examples/: manifests valid for Kubernetes and the TalkingVideo CRD; the Argo CD health check works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import lupa.lua51
import pytest
import yaml
from chart_render import KUBE_VERSIONS, ROOT
from pod_security import restricted_violations

EXAMPLES = ROOT / "examples"
GITOPS = EXAMPLES / "gitops"
TALKING_VIDEOS = sorted(EXAMPLES.glob("talkingvideo-*.yaml"))
KUBERNETES_MANIFESTS = [
    EXAMPLES / "storage-secret.yaml",
    EXAMPLES / "model-cache" / "pvc.yaml",
    EXAMPLES / "model-cache" / "fill-job.yaml",
    GITOPS / "argocd-cm-patch.yaml",
]


def _load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1, path
    doc: dict[str, Any] = docs[0]
    return doc


def _crd_schema() -> dict[str, Any]:
    crd = _load(ROOT / "crds" / "talkingvideos.multitalk.dev.yaml")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_examples_cover_the_documented_cases() -> None:
    names = {p.name for p in TALKING_VIDEOS}
    assert names >= {
        "talkingvideo-one-speaker.yaml",
        "talkingvideo-two-speakers.yaml",
        "talkingvideo-lite-cpu.yaml",
        "talkingvideo-kueue.yaml",
    }


@pytest.mark.parametrize("path", TALKING_VIDEOS, ids=lambda p: p.name)
def test_talking_video_matches_the_crd_schema(path: Path) -> None:
    obj = _load(path)
    assert obj["apiVersion"] == "multitalk.dev/v1alpha1" and obj["kind"] == "TalkingVideo"
    # The structural schema's JSON-Schema part (types, enums, patterns, bounds, required);
    # the API server adds the CEL rules, checked for the cases below by hand.
    jsonschema.Draft7Validator(_crd_schema()).validate(obj)
    spec = obj["spec"]
    if len(spec["speakers"]) == 2:
        assert "image" in spec, "two speakers need an image"
    for speaker in spec["speakers"]:
        if "bbox" in speaker:
            top, left, bottom, right = speaker["bbox"]
            assert top < bottom and left < right, "bbox is [top, left, bottom, right]"
    if spec.get("allowFallback"):
        assert spec.get("engine", "auto") != "auto"
    if spec.get("engine") == "multitalk":
        assert spec["modelCache"]["claimName"]


def test_lite_example_needs_no_gpu_and_kueue_example_is_queued() -> None:
    lite = _load(EXAMPLES / "talkingvideo-lite-cpu.yaml")["spec"]
    assert lite["engine"] == "lite" and "nvidia.com/gpu" not in str(lite["runner"]["resources"])
    kueue = _load(EXAMPLES / "talkingvideo-kueue.yaml")["spec"]
    assert kueue["scheduling"]["queueName"]


@pytest.mark.parametrize("path", KUBERNETES_MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(path: Path) -> None:
    obj = _load(path)
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_secret_example_holds_placeholders_only() -> None:
    text = (EXAMPLES / "storage-secret.yaml").read_text()
    assert "PLACEHOLDER CREDENTIALS" in text
    values = _load(EXAMPLES / "storage-secret.yaml")["stringData"]
    assert set(values) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all(v.startswith("REPLACE-ME") for v in values.values())


def test_model_cache_fill_job_is_restricted() -> None:
    job = _load(EXAMPLES / "model-cache" / "fill-job.yaml")
    spec = job["spec"]["template"]["spec"]
    assert restricted_violations(spec) == []
    script = spec["containers"][0]["args"][0]
    for repo in ("Wan-AI/Wan2.1-I2V-14B-480P", "TencentGameMate/chinese-wav2vec2-base", "MeiGen-AI/MeiGen-MultiTalk"):
        assert f"hf download {repo}" in script
    assert (
        spec["volumes"][0]["persistentVolumeClaim"]["claimName"]
        == _load(EXAMPLES / "model-cache" / "pvc.yaml")["metadata"]["name"]
    )


# Argo CD health check, run in Lua 5.1 as Argo CD runs it.
HEALTH_SCRIPT = (GITOPS / "talkingvideo-health.lua").read_text()


def _health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    lua.globals().obj = to_lua(obj)
    result = lua.execute(HEALTH_SCRIPT)
    return str(result["status"]), str(result["message"])


def _tv(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "hello", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = {"observedGeneration": 1, **status}
    return obj


def _condition(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def test_argocd_health_states() -> None:
    assert _health(_tv(None))[0] == "Progressing"
    assert _health(_tv({"phase": "Succeeded"}, generation=2))[0] == "Progressing"
    assert _health(_tv({"phase": "Pending"})) == ("Progressing", "Pending")
    assert _health(_tv({"phase": "Queued"}))[0] == "Progressing"
    running = _health(_tv({"phase": "Running", "progress": {"stage": "generate", "percent": 40}}))
    assert running == ("Progressing", "Running: generate 40%")
    done = _tv(
        {
            "phase": "Succeeded",
            "conditions": [_condition("Complete")],
            "engine": {"name": "multitalk"},
            "output": {"uri": "s3://media/outputs/hello.mp4"},
        }
    )
    assert _health(done) == ("Healthy", "Rendered with multitalk: s3://media/outputs/hello.mp4")
    failed = _tv(
        {
            "phase": "Failed",
            "conditions": [_condition("Complete", "False"), _condition("Failed", "True", "InvalidSpec", "bad bbox")],
        }
    )
    assert _health(failed) == ("Degraded", "InvalidSpec: bad bbox")
    assert _health(_tv({"phase": "Suspended"}))[0] == "Suspended"


def test_argocd_configmap_carries_the_same_script() -> None:
    cm = _load(GITOPS / "argocd-cm-patch.yaml")
    assert cm["data"]["resource.customizations.health.multitalk.dev_TalkingVideo"] == HEALTH_SCRIPT


def test_flux_kustomization_health_expressions_name_the_conditions() -> None:
    kustomization = _load(GITOPS / "flux-kustomization.yaml")
    exprs = kustomization["spec"]["healthCheckExprs"][0]
    assert (exprs["apiVersion"], exprs["kind"]) == ("multitalk.dev/v1alpha1", "TalkingVideo")
    assert "'Complete'" in exprs["current"] and "'Failed'" in exprs["failed"]
