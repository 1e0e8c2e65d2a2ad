"""The control plane the cluster tests use has real API semantics (not an emulator)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster.session import Cluster
from cluster.testnode import TestNode
from cluster.waiting import eventually
from kubernetes import client

pytestmark = pytest.mark.cluster

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.multitalk.dev"},
    "spec": {
        "group": "smoke.multitalk.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "box": {"type": "array", "items": {"type": "integer"}},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(self.box) || size(self.box) == 4",
                                        "message": "box needs 4 numbers",
                                        "fieldPath": ".box",
                                    }
                                ],
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {"apiVersion": "smoke.multitalk.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    )


@pytest.fixture(scope="module")
def widget_crd(cluster: Cluster) -> str:
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(WIDGET_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.multitalk.dev", "--timeout=60s")
    return "widgets.smoke.multitalk.dev"


def test_crd_schema_and_cel_rules_refuse_bad_objects_at_apply(
    cluster: Cluster, namespace: str, widget_crd: str
) -> None:
    too_big = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("a", {"size": 11}), check=False)
    assert too_big.returncode != 0
    assert "spec.size" in too_big.stderr and "less than or equal to 10" in too_big.stderr

    bad_box = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=widget("b", {"size": 1, "box": [1, 2]}), check=False
    )
    assert bad_box.returncode != 0
    assert "spec.box" in bad_box.stderr and "box needs 4 numbers" in bad_box.stderr

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("c", {"size": 3, "box": [1, 2, 3, 4]}))
    custom = client.CustomObjectsApi(cluster.api)
    # The status subresource: a spec change through /status is ignored, status is kept.
    custom.patch_namespaced_custom_object_status(
        "smoke.multitalk.dev", "v1", namespace, "widgets", "c", {"status": {"phase": "Done"}, "spec": {"size": 9}}
    )
    stored = custom.get_namespaced_custom_object("smoke.multitalk.dev", "v1", namespace, "widgets", "c")
    assert stored["status"] == {"phase": "Done"}
    assert stored["spec"]["size"] == 3
    assert stored["metadata"]["generation"] == 1

    # Optimistic concurrency: a write with a stale resourceVersion is refused.
    stale = dict(stored, spec={"size": 4})
    custom.patch_namespaced_custom_object("smoke.multitalk.dev", "v1", namespace, "widgets", "c", {"spec": {"size": 5}})
    with pytest.raises(client.ApiException) as conflict:
        custom.replace_namespaced_custom_object("smoke.multitalk.dev", "v1", namespace, "widgets", "c", stale)
    assert conflict.value.status == 409


def test_server_side_apply_tracks_field_managers_and_conflicts(cluster: Cluster, namespace: str) -> None:
    def config_map(value: str) -> str:
        return json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"key": value}}
        )

    cluster.kubectl(
        "apply", "--server-side", "--field-manager=alice", "-n", namespace, "-f", "-", input=config_map("a")
    )
    clash = cluster.kubectl(
        "apply", "--server-side", "--field-manager=bob", "-n", namespace, "-f", "-", input=config_map("b"), check=False
    )
    assert clash.returncode != 0 and "conflict" in clash.stderr.lower() and "alice" in clash.stderr
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=bob", "-n", namespace, "-f", "-",
        input=config_map("b"),
    )  # fmt: skip
    stored = client.CoreV1Api(cluster.api).read_namespaced_config_map("shared", namespace)
    assert stored.data == {"key": "b"}
    assert {m.manager for m in stored.metadata.managed_fields} == {"bob"}


def test_garbage_collector_removes_owned_objects(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "owned", "ownerReferences": [reference]}})
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except client.ApiException as error:
            return error.status == 404
        return False

    eventually(gone, what="the garbage collector to delete the owned ConfigMap")


def test_rbac_denies_a_service_account_without_roles(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token
    configuration = client.Configuration()
    configuration.host = cluster.api.configuration.host
    configuration.ssl_ca_cert = cluster.api.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(configuration) as nobody, pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(nobody).list_namespaced_pod(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in str(denied.value.body)


def test_job_controller_runs_a_pod_on_the_test_node_and_gc_removes_it(
    local_cluster: Cluster, namespace: str, test_node: TestNode
) -> None:
    batch, core = client.BatchV1Api(local_cluster.api), client.CoreV1Api(local_cluster.api)
    script = "import os, sys; open(os.environ['RESULT'], 'w').write('hello from ' + os.environ['POD']); sys.exit(0)"
    job = {
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3",
                            "command": ["python", "-c", script],
                            "env": [
                                {"name": "RESULT", "value": "/dev/termination-log"},
                                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            ],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                }
            },
        },
    }
    batch.create_namespaced_job(namespace, job)
    local_cluster.kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/hello", "--timeout=90s")
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=hello").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.spec.node_name == test_node.name and pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0 and terminated.message == f"hello from {pod.metadata.name}"

    batch.delete_namespaced_job("hello", namespace, propagation_policy="Background")

    def pod_gone() -> bool:
        return not core.list_namespaced_pod(namespace, label_selector="job-name=hello").items

    eventually(pod_gone, what="the garbage collector to delete the Job's pod")
