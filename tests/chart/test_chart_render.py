"""The chart lints strictly and renders valid Kubernetes objects for every supported version."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_render import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    VALUE_SETS,
    by_kind,
    notes,
    one,
    operator_deployment,
    render_objects,
    test_pod,
)

from multitalk.operator.settings import OperatorSettings


@pytest.mark.parametrize("kube_version", [KUBE_VERSIONS[0], KUBE_VERSIONS[-1]])
@pytest.mark.parametrize("set_name", sorted(VALUE_SETS))
def test_lint_strict(set_name: str, kube_version: str) -> None:
    report = helm.lint(
        CHART_DIR, VALUE_SETS[set_name], strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}.0"
    )
    # Severity: 1 info, 2 warning, 3 error. Strict lint fails on warnings too.
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    assert not findings and not report["errors"], report


def test_kube_version_constraint_matches_the_tested_versions() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        assert chart.metadata["kubeVersion"] == f">={KUBE_VERSIONS[0]}.0-0"
    assert kubernetes_validate.utils.latest_version().startswith(KUBE_VERSIONS[-1])


@pytest.mark.parametrize("set_name", sorted(VALUE_SETS))
def test_objects_valid_for_every_supported_kubernetes(set_name: str) -> None:
    objects = render_objects(VALUE_SETS[set_name])
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # Prometheus Operator's CRD, not a Kubernetes API: checked in test_service_monitor.
        for version in KUBE_VERSIONS:
            # Strict: unknown fields (typos) are errors, as `kubectl apply` with field validation would say.
            kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 4


def test_every_object_is_namespaced_to_the_release_or_a_watched_namespace() -> None:
    cluster_kinds = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    for set_name, values in VALUE_SETS.items():
        allowed = {NAMESPACE, *values.get("watchNamespaces", []), *[values.get("test", {}).get("namespace", NAMESPACE)]}
        for obj in render_objects(values):
            if obj["kind"] in cluster_kinds:
                assert "namespace" not in obj["metadata"], (set_name, obj["kind"])
            else:
                assert obj["metadata"]["namespace"] in allowed, (set_name, obj["kind"], obj["metadata"])


def test_operator_deployment_single_replica_recreate() -> None:
    for values in VALUE_SETS.values():
        deployment = operator_deployment(values)
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["multitalk-operator"]
        probe = container["livenessProbe"]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert probe["path"] == "/healthz"
        assert ports[probe["port"]] == values.get("health", {}).get("port", 8081)


def _operator_env(values: dict[str, Any]) -> dict[str, str]:
    container = operator_deployment(values)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("MULTITALK_")}


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    for name in OperatorSettings.model_fields:
        monkeypatch.delenv(f"MULTITALK_{name.upper()}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return OperatorSettings()


def test_env_names_are_the_operator_settings_contract() -> None:
    known = {f"MULTITALK_{name.upper()}" for name in OperatorSettings.model_fields}
    env = _operator_env(VALUE_SETS["full"])
    assert set(env) <= known, f"the chart sets variables the operator does not read: {set(env) - known}"
    assert set(env) == known, f"settings the chart cannot configure: {known - set(env)}"


def test_full_values_reach_the_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from(_operator_env(VALUE_SETS["full"]), monkeypatch)
    assert settings.namespaces == []
    assert settings.runner_image == "registry.example.com/ml/multitalk-runner:0.1.0"
    assert settings.runner_image_pull_policy == "Always"
    assert json.loads(settings.runner_resources) == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"memory": "96Gi", "nvidia.com/gpu": 2},
    }
    assert settings.storage_endpoint == "http://minio.minio.svc:9000"
    assert settings.storage_region == "us-east-1"
    assert settings.storage_secret_name == "s3-creds"
    assert settings.model_cache_claim == "multitalk-models"
    assert settings.model_cache_mount_path == "/models"
    assert settings.queue_name == "gpu"
    assert settings.runtime_class_name == "nvidia"
    assert (settings.metrics_port, settings.health_port) == (9090, 9091)
    assert (settings.progress_poll_seconds, settings.resync_seconds) == (5.0, 30.0)
    assert (settings.watch_server_timeout, settings.watch_client_timeout) == (120, 150)
    assert settings.copy_label_keys == ["team", "example.com/cost-center"]
    assert (settings.runner_run_as_user, settings.progress_log_bytes) == (10001, 8192)
    assert settings.cleanup_on_delete is False


def test_default_values_leave_optional_settings_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _operator_env({})
    assert not {"MULTITALK_STORAGE_SECRET_NAME", "MULTITALK_MODEL_CACHE_CLAIM", "MULTITALK_QUEUE_NAME"} & set(env)
    settings = _settings_from(env, monkeypatch)
    assert settings.namespaces == [] and settings.copy_label_keys == []
    assert settings.storage_secret_name is None and settings.model_cache_claim is None and settings.queue_name is None
    assert json.loads(settings.runner_resources)["limits"]["nvidia.com/gpu"] == 1
    # Runner pods run as the image's own non-root user.
    assert settings.runner_run_as_user == 65532
    assert settings.runner_image == f"multitalk-runner:{helm.Chart.load(CHART_DIR).metadata['appVersion']}"


def test_namespaced_mode_reaches_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from(_operator_env(VALUE_SETS["namespaced"]), monkeypatch)
    assert settings.namespaces == ["team-a", "team-b"]


def test_no_secret_material_in_rendered_objects() -> None:
    for values in VALUE_SETS.values():
        objects = render_objects(values)
        assert not by_kind(objects, "Secret")
        deployment = one(objects, "Deployment")
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), "the operator never reads Secrets"
                assert "AWS_SECRET_ACCESS_KEY" not in env["name"]


def test_crd_template_keeps_the_crd_on_uninstall() -> None:
    crds = by_kind(render_objects({}), "CustomResourceDefinition")
    assert [c["metadata"]["name"] for c in crds] == ["talkingvideos.multitalk.dev"]
    assert crds[0]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not by_kind(render_objects({"crds": {"install": False}}), "CustomResourceDefinition")


def test_service_and_service_monitor() -> None:
    objects = render_objects(VALUE_SETS["full"])
    service = one(objects, "Service")
    monitor = one(objects, "ServiceMonitor")
    assert service["spec"]["ports"][0] == {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    # The Service selects the operator's pod.
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # ...and nothing else: not the `helm test` pod.
    check_labels = test_pod(VALUE_SETS["full"])["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= check_labels.items()
    assert not by_kind(render_objects(VALUE_SETS["defaults"]), "ServiceMonitor")
    assert not by_kind(render_objects(VALUE_SETS["minimal"]), "Service")


def test_helm_test_pod_checks_the_engine_with_gpu_and_model_cache() -> None:
    pod = test_pod(VALUE_SETS["full"])
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["multitalk-runner", "check", "--require", "multitalk"]
    assert container["image"] == "registry.example.com/ml/multitalk-runner:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["securityContext"]["runAsUser"] == 10001
    assert pod["metadata"]["namespace"] == "team-a"  # where the model-cache PVC lives
    assert test_pod({})["metadata"]["namespace"] == NAMESPACE
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "multitalk-models", "readOnly": True}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MULTITALK_MODEL_DIR"] == "/models"
    assert test_pod(VALUE_SETS["minimal"])["spec"]["containers"][0]["command"][-1] == "lite"


def test_notes_show_first_apply_and_get() -> None:
    text = notes({})
    assert "kubectl -n multitalk-system apply -f -" in text
    assert "kind: TalkingVideo" in text
    assert "kubectl -n multitalk-system get tv" in text
    namespaced = notes(VALUE_SETS["namespaced"])
    assert "kubectl -n team-a get tv" in namespaced
    assert "kubectl apply --server-side -f crds/" in namespaced
