"""The operator image holds only requirements/operator.txt: the operator must import with nothing else.

Runs `import multitalk.operator.main` in a fresh interpreter of this environment where every
third-party module not provided by a distribution in the operator lock file refuses to
import, so a stray `import torch` / `import av` in the operator fails here, not in the image.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GUARD = r"""
import importlib.abc, json, sys
allowed = set(json.loads(sys.argv[1]))
blocked = set(json.loads(sys.argv[2]))

class OnlyOperatorLock(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in blocked and top not in allowed:
            raise ImportError(f"{top} is not in requirements/operator.txt (the operator image lacks it)")
        return None

sys.meta_path.insert(0, OnlyOperatorLock())
import multitalk.operator.main
print("ok")
"""


def _locked_distributions() -> set[str]:
    names = set()
    for line in (ROOT / "requirements" / "operator.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            names.add(re.sub(r"[-_.]+", "-", line.split("==")[0]).lower())
    return names


def test_operator_imports_with_the_operator_lock_only() -> None:
    locked = _locked_distributions() | {"multitalk-operator"}
    allowed: set[str] = set()
    blocked: set[str] = set()
    for module, dists in metadata.packages_distributions().items():
        normalized = {re.sub(r"[-_.]+", "-", d).lower() for d in dists}
        (allowed if normalized & locked else blocked).add(module)
    assert {"kopf", "aiohttp", "prometheus_client"} <= allowed
    # The operator talks to the API through kopf's aiohttp: the kubernetes client (its
    # models are ~45 MiB) is the tests' only.
    assert {"numpy", "av", "boto3", "kubernetes"} <= blocked
    result = subprocess.run(
        [sys.executable, "-c", GUARD, json.dumps(sorted(allowed)), json.dumps(sorted(blocked))],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
