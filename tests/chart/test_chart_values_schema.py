"""values.schema.json (and the chart's own checks) refuse bad values with messages naming the key."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
from chart_render import CHART_DIR, VALUE_SETS, render_templates

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"watchNamespaces": ["a", "a"]}, "/watchNamespaces"),
    ({"watchNamespaces": "team-a"}, "/watchNamespaces"),
    ({"crds": {"install": "yes"}}, "/crds/install"),
    ({"image": {"repository": "multitalk operator"}}, "/image/repository"),
    ({"image": {"repository": "multitalk-operator", "pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"runner": {"image": {"repository": "r", "tag": "bad tag"}}}, "/runner/image/tag"),
    ({"runner": {"resources": {"limits": {"nvidia.com/gpu": "one"}}}}, "/runner/resources/limits/nvidia.com~1gpu"),
    ({"runner": {"resources": {"limit": {"cpu": 1}}}}, "/runner/resources"),
    ({"storage": {"endpoint": "minio:9000"}}, "/storage/endpoint"),
    ({"storage": {"secretName": "S3_Creds"}}, "/storage/secretName"),
    ({"modelCache": {"mountPath": "models"}}, "/modelCache/mountPath"),
    ({"modelCache": {"claimName": "Models!"}}, "/modelCache/claimName"),
    ({"kueue": {"queueName": "GPU Queue"}}, "/kueue/queueName"),
    ({"metrics": {"port": 80}}, "/metrics/port"),
    ({"metrics": {"port": "8080"}}, "/metrics/port"),
    ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "/metrics/serviceMonitor/interval"),
    ({"health": {"port": 70000}}, "/health/port"),
    ({"operator": {"resyncSeconds": 0}}, "/operator/resyncSeconds"),
    ({"test": {"engine": "gpu"}}, "/test/engine"),
    ({"copyLabelKeys": ["bad key"]}, "/copyLabelKeys/0"),
    ({"replicaCount": 2}, "replicaCount"),
]

# Cross-field rules the schema cannot state clearly: the chart's templates refuse them.
BAD_COMBINATIONS: list[tuple[dict[str, Any], str]] = [
    ({"operator": {"watchServerTimeout": 300, "watchClientTimeout": 300}}, "operator.watchClientTimeout"),
    ({"copyLabelKeys": ["app.kubernetes.io/instance"]}, "copyLabelKeys"),
    ({"copyLabelKeys": ["argocd.argoproj.io/instance"]}, "Argo CD"),
    ({"operator": {"extraEnv": [{"name": "MULTITALK_QUEUE_NAME", "value": "x"}]}}, "operator.extraEnv"),
    ({"modelCache": {"mountPath": "/tmp"}}, "modelCache.mountPath"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema(chart.merge_values(values))
    assert where in str(info.value)
    # An install refuses them the same way.
    with pytest.raises(helm.HelmValuesError, match=where.replace(".", r"\.").replace("/", r"/")):
        render_templates(values)


@pytest.mark.parametrize(("values", "message"), BAD_COMBINATIONS, ids=[m for _, m in BAD_COMBINATIONS])
def test_templates_reject_bad_combinations(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as info:
        render_templates(values)
    assert message in str(info.value)


@pytest.mark.parametrize("set_name", sorted(VALUE_SETS))
def test_schema_accepts_the_documented_value_sets(set_name: str) -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(chart.merge_values(VALUE_SETS[set_name]))
