"""The TalkingVideo CRD on a real API server: Established, explained, and bad objects refused at apply."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from bad_specs import BAD, GOOD, Bad, bad_object
from cluster.session import Cluster
from cluster.waiting import eventually

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "talkingvideos.multitalk.dev.yaml"


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


@pytest.mark.parametrize(("index", "bad"), list(enumerate(BAD)), ids=[b.id for b in BAD])
def test_bad_object_is_refused_at_apply_naming_the_field(
    cluster: Cluster, namespace: str, crd: str, index: int, bad: Bad
) -> None:
    """The table tests/operator/test_crd.py checks against the operator and cel-python."""
    refused = cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=json.dumps(bad_object(bad, f"bad-{index}")),
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0, f"{bad.id} was accepted"
    for word in (bad.field, *bad.words):
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
