"""Copy the generated CRDs (crds/*.yaml) into the chart (helm/files/crds/), byte for byte.

Run after regenerating crds/:  python tests/chart/sync_crds.py
The chart's templates/crds.yaml renders these copies; test_chart_crds.py fails when stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "crds"
TARGET = ROOT / "helm" / "files" / "crds"


def expected_copies(source: Path = SOURCE) -> dict[str, bytes]:
    """File name -> content the chart must carry."""
    return {path.name: path.read_bytes() for path in sorted(source.glob("*.yaml"))}


def current_copies(target: Path = TARGET) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(target.glob("*.yaml"))}


def sync(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """Make target mirror source; returns the names written or removed."""
    wanted = expected_copies(source)
    if not wanted:
        raise SystemExit(f"no CRDs found in {source.relative_to(ROOT)}/: generate them first")
    target.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for name in current_copies(target):
        if name not in wanted:
            (target / name).unlink()
            changed.append(f"removed {name}")
    for name, data in wanted.items():
        path = target / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            changed.append(f"wrote {name}")
    return changed


if __name__ == "__main__":
    for line in sync() or ["helm/files/crds/ is up to date"]:
        print(line)
    sys.exit(0)
