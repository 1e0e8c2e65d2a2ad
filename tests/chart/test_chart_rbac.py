"""RBAC: least privilege in both modes; never Secrets, never wildcards."""

from __future__ import annotations

from typing import Any

import pytest
from chart_render import RELEASE, VALUE_SETS, by_kind, render_objects

ROLE_KINDS = ("ClusterRole", "Role")

# What the operator needs in every watched namespace (group, resource) -> verbs.
NEEDED = {
    ("multitalk.dev", "talkingvideos"): {"get", "list", "watch", "patch"},
    ("multitalk.dev", "talkingvideos/status"): {"get", "list", "watch", "patch"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete", "patch"},  # patch: spec.suspend
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
# Only in cluster-wide mode: kopf's read-only discovery.
CLUSTER_ONLY = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}


def _grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def _operator_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Roles bound to the operator's ServiceAccount (not the aggregated user roles)."""
    bound = {
        (b["roleRef"]["kind"], b["roleRef"]["name"], b["metadata"].get("namespace"))
        for b in objects
        if b["kind"] in ("ClusterRoleBinding", "RoleBinding")
    }
    return [o for o in objects if (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) in bound]


@pytest.mark.parametrize("set_name", sorted(VALUE_SETS))
def test_no_secrets_no_wildcards_no_escalation(set_name: str) -> None:
    roles = [o for o in render_objects(VALUE_SETS[set_name]) if o["kind"] in ROLE_KINDS]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            where = f"{role['kind']}/{role['metadata']['name']}: {rule}"
            assert "*" not in rule.get("verbs", []), where
            assert "*" not in rule.get("resources", []), where
            assert "*" not in rule.get("apiGroups", []), where
            assert "nonResourceURLs" not in rule, where
            assert "resourceNames" not in rule or rule["resourceNames"], where
            assert not {r.split("/")[0] for r in rule.get("resources", [])} & {"secrets", "serviceaccounts"}, where
            assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate"}, where


def test_cluster_mode_grants_exactly_what_the_operator_needs() -> None:
    objects = render_objects(VALUE_SETS["defaults"])
    roles = _operator_roles(objects)
    assert [r["kind"] for r in roles] == ["ClusterRole"]
    assert _grants(roles[0]) == NEEDED | CLUSTER_ONLY
    binding = by_kind(objects, "ClusterRoleBinding")[0]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-multitalk-operator", "namespace": "multitalk-system"}
    ]
    assert not by_kind(objects, "Role") and not by_kind(objects, "RoleBinding")


def test_aggregated_user_roles_are_read_or_talkingvideo_only() -> None:
    objects = render_objects(VALUE_SETS["defaults"])
    aggregated = [o for o in by_kind(objects, "ClusterRole") if o not in _operator_roles(objects)]
    assert {r["metadata"]["name"].rsplit("-", 1)[1] for r in aggregated} == {"edit", "view"}
    for role in aggregated:
        assert {group for group, _ in _grants(role)} == {"multitalk.dev"}
        for (_, resource), verbs in _grants(role).items():
            if resource.endswith("/status"):
                assert verbs <= {"get", "list", "watch"}  # status belongs to the operator


def test_namespaced_mode_has_nothing_cluster_wide() -> None:
    values = VALUE_SETS["namespaced"]
    objects = render_objects(values)
    cluster_scoped = [
        o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition")
    ]
    assert cluster_scoped == []
    roles = by_kind(objects, "Role")
    bindings = by_kind(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == values["watchNamespaces"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == values["watchNamespaces"]
    for role in roles:
        assert _grants(role) == NEEDED
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == "multitalk-system"


def test_namespaced_mode_with_crd_keeps_rbac_namespaced() -> None:
    objects = render_objects({"watchNamespaces": ["team-a"]})
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")


def test_existing_service_account_is_bound_and_not_created() -> None:
    objects = render_objects(VALUE_SETS["minimal"])
    assert not by_kind(objects, "ServiceAccount")
    assert by_kind(objects, "ClusterRoleBinding")[0]["subjects"][0]["name"] == "existing-sa"
    deployment = by_kind(objects, "Deployment")[0]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa"
