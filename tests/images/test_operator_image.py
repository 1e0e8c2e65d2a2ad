"""The operator image: no torch, uid 65532, the operator's imports from a read-only root.
(It is run against a real API server in tests/e2e/test_operator_image_on_cluster.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster import images
from cluster.images import writable

pytestmark = pytest.mark.images


def test_operator_image_has_no_torch_and_runs_as_65532(operator_image: str, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, os\n"
        "import multitalk.operator.main, multitalk.operator.handlers\n"
        "missing = [m for m in ('torch', 'numpy', 'av', 'boto3') if importlib.util.find_spec(m) is None]\n"
        "print(' '.join(missing), os.getuid(), os.getgid())\n"
    )
    result = images.run(
        operator_image, "-c", probe, entrypoint=["python3"], volumes={str(writable(tmp_path)): "/tmp"}, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["torch", "numpy", "av", "boto3", "65532", "65532"]


def test_operator_image_user_and_entrypoint(operator_image: str) -> None:
    config = images.inspect(operator_image)["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["multitalk-operator"]
