"""Rendered operator and `helm test` runner pods satisfy Pod Security "restricted"."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from chart_render import VALUE_SETS, operator_deployment, test_pod
from pod_security import restricted_violations


@pytest.mark.parametrize("set_name", sorted(VALUE_SETS))
def test_operator_pod_is_restricted(set_name: str) -> None:
    spec = operator_deployment(VALUE_SETS[set_name])["spec"]["template"]["spec"]
    assert restricted_violations(spec) == []
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("set_name", sorted(VALUE_SETS))
def test_runner_check_pod_is_restricted(set_name: str) -> None:
    spec = test_pod(VALUE_SETS[set_name])["spec"]
    assert restricted_violations(spec) == []
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in spec["volumes"])


def test_checker_catches_each_kind_of_violation() -> None:
    good = operator_deployment({})["spec"]["template"]["spec"]
    assert restricted_violations(good) == []
    breakages: dict[str, Callable[[dict[str, Any]], object]] = {
        "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
        "allowPrivilegeEscalation": lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
        "capabilities.drop": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(drop=[]),
        "capabilities.add": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "runAsNonRoot": lambda s: (
            s["securityContext"].pop("runAsNonRoot"),
            s["containers"][0]["securityContext"].pop("runAsNonRoot"),
        ),
        "runAsUser": lambda s: s["securityContext"].update(runAsUser=0),
        "seccompProfile": lambda s: (
            s["securityContext"].pop("seccompProfile"),
            s["containers"][0]["securityContext"].pop("seccompProfile"),
        ),
        "hostNetwork": lambda s: s.update(hostNetwork=True),
        "hostPort": lambda s: s["containers"][0]["ports"][0].update(hostPort=8080),
        "uses ['hostPath']": lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
    }
    for expected, breaks in breakages.items():
        spec = copy.deepcopy(good)
        breaks(spec)
        problems = restricted_violations(spec)
        assert any(expected in p for p in problems), (expected, problems)
