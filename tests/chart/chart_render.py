"""Render the Helm chart offline through the Helm library (helm-python-sdk) for the chart tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm"
NAMESPACE = "multitalk-system"
RELEASE = "mt"

# Kubernetes versions the chart supports (Chart.yaml kubeVersion >=1.30); every rendered
# object is checked against the API schemas of each.
KUBE_VERSIONS = ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37"]

# Values sets the tests render: the defaults, namespaced mode, everything set, and the
# variations that switch parts off.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"], "crds": {"install": False}},
    "full": {
        "image": {"repository": "registry.example.com/ml/multitalk-operator", "tag": "0.1.0"},
        "imagePullSecrets": [{"name": "regcred"}],
        "runner": {
            "image": {"repository": "registry.example.com/ml/multitalk-runner", "tag": "0.1.0", "pullPolicy": "Always"},
            "resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"nvidia.com/gpu": 2}},
            "runtimeClassName": "nvidia",
            "runAsUser": 10001,
        },
        "storage": {"endpoint": "http://minio.minio.svc:9000", "region": "us-east-1", "secretName": "s3-creds"},
        "modelCache": {"claimName": "multitalk-models", "mountPath": "/models"},
        "kueue": {"queueName": "gpu"},
        "copyLabelKeys": ["team", "example.com/cost-center"],
        "operator": {
            "progressPollSeconds": 5,
            "resyncSeconds": 30,
            "watchServerTimeout": 120,
            "watchClientTimeout": 150,
            "progressLogBytes": 8192,
            "cleanupOnDelete": False,
            "extraEnv": [{"name": "KOPF_LOG_FORMAT", "value": "json"}],
        },
        "metrics": {"port": 9090, "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "health": {"port": 9091},
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "podLabels": {"team": "ml-platform"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "test": {
            "engine": "multitalk",
            "namespace": "team-a",
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    },
    "minimal": {
        "crds": {"install": False},
        "serviceAccount": {"create": False, "name": "existing-sa"},
        "rbac": {"aggregateToDefaultRoles": False},
        "metrics": {"service": {"enabled": False}},
        "test": {"engine": "lite"},
    },
}


# A SafeLoader that refuses duplicate keys (kubectl and the API server refuse them too).
_StrictLoader: Any = type("_StrictLoader", (yaml.SafeLoader,), {})


def _mapping_without_duplicates(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(duplicates)}", node.start_mark)
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def render_templates(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce for an install."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values=values, name=RELEASE, namespace=namespace, is_install=True)


def render_objects(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (hooks such as the `helm test` pod included)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_templates(values, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.load_all(text, Loader=_StrictLoader):  # a SafeLoader subclass
            if doc:
                assert isinstance(doc, dict), f"{path} rendered a non-object document"
                objects.append(doc)
    return objects


def notes(values: dict[str, Any] | None = None) -> str:
    return next(text for path, text in render_templates(values).items() if path.endswith("NOTES.txt"))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_deployment(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return one(render_objects(values), "Deployment")


def test_pod(values: dict[str, Any] | None = None) -> dict[str, Any]:
    pods = [
        o
        for o in render_objects(values)
        if o["kind"] == "Pod" and o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    assert len(pods) == 1, "the chart must render exactly one `helm test` pod"
    return pods[0]


# pytest must not collect the helper above as a test.
test_pod.__test__ = False  # type: ignore[attr-defined]
