"""Runner Jobs the operator builds with the chart's settings: valid for every supported
Kubernetes version, Pod Security "restricted", and consistent with the runner image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_render import KUBE_VERSIONS, ROOT, VALUE_SETS, operator_deployment
from pod_security import restricted_violations

from multitalk.operator.api import parse_spec
from multitalk.operator.job_builder import SCRATCH_PATH, build_job
from multitalk.operator.settings import OperatorSettings

EXAMPLES = sorted((ROOT / "examples").glob("talkingvideo-*.yaml"))


def _settings(values: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    container = operator_deployment(values)["spec"]["template"]["spec"]["containers"][0]
    for name in OperatorSettings.model_fields:
        monkeypatch.delenv(f"MULTITALK_{name.upper()}", raising=False)
    for env in container["env"]:
        if env["name"].startswith("MULTITALK_"):
            monkeypatch.setenv(env["name"], env["value"])
    return OperatorSettings()


@pytest.mark.parametrize("set_name", ["defaults", "full"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_runner_job_from_chart_settings(set_name: str, example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(VALUE_SETS[set_name], monkeypatch)
    tv = yaml.safe_load(example.read_text())
    tv["metadata"].setdefault("namespace", "team-a")
    tv["metadata"]["uid"] = "0b9f6f7e-2a57-4a59-9d0c-3c1f7f2f8a11"
    job = build_job(tv, parse_spec(tv["spec"]), settings)
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    # The image's caches and HOME live under /tmp: the Job must mount a writable volume there.
    assert SCRATCH_PATH == "/tmp"
    assert any(m["mountPath"] == SCRATCH_PATH and not m.get("readOnly") for m in container["volumeMounts"])
    assert pod["securityContext"]["runAsUser"] == VALUE_SETS[set_name].get("runner", {}).get("runAsUser", 65532)
    if not tv["spec"].get("runner", {}).get("image"):
        expected = "registry.example.com/ml/multitalk-runner:0.1.0" if set_name == "full" else "multitalk-runner:"
        assert container["image"].startswith(expected)
    assert not any(e["name"] == "AWS_SECRET_ACCESS_KEY" and "value" in e for e in container["env"])
