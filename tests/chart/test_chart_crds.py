"""The chart's CRD copy equals crds/, and the chart renders it unchanged (plus keep/labels)."""

from __future__ import annotations

from pathlib import Path

import yaml
from chart_render import VALUE_SETS, by_kind, render_objects
from sync_crds import SOURCE, TARGET, current_copies, expected_copies, sync


def test_crds_exist_and_chart_copy_is_current() -> None:
    wanted = expected_copies()
    assert wanted, "crds/ holds no CRD: generate it (issue 4's generator) and run tests/chart/sync_crds.py"
    assert current_copies() == wanted, "helm/files/crds/ is stale: run `python tests/chart/sync_crds.py`"


def test_rendered_crds_equal_the_generated_ones() -> None:
    generated = {
        doc["metadata"]["name"]: doc
        for path in sorted(SOURCE.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    rendered = {
        c["metadata"]["name"]: c for c in by_kind(render_objects(VALUE_SETS["defaults"]), "CustomResourceDefinition")
    }
    assert set(rendered) == set(generated)
    for name, crd in rendered.items():
        source = generated[name]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        # fromYaml/toYaml in the template must not change the schema (numbers, order-free).
        assert crd["spec"] == source["spec"]
        assert {k: v for k, v in crd.items() if k != "metadata"} == {k: v for k, v in source.items() if k != "metadata"}


def test_sync_mirrors_and_prunes(tmp_path: Path) -> None:
    source, target = tmp_path / "crds", tmp_path / "chart"
    source.mkdir()
    target.mkdir()
    (source / "a.yaml").write_text("kind: CustomResourceDefinition\n")
    (target / "old.yaml").write_text("stale\n")
    assert sync(source, target) == ["removed old.yaml", "wrote a.yaml"]
    assert current_copies(target) == expected_copies(source)
    assert sync(source, target) == []
    assert TARGET.parent.name == "files"
