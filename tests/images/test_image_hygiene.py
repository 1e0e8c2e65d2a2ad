"""Both images: OCI labels, and nothing in their layers that a runtime image should not carry
(compilers, package managers' caches, an installer in the venv, build secrets)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cluster import images

pytestmark = pytest.mark.images

IMAGES = {"operator": images.OPERATOR_IMAGE, "runner": images.RUNNER_IMAGE}
COMPILERS = ("gcc", "g++", "cc", "c++", "clang", "ld", "as", "make", "cmake", "rustc", "go")


@contextmanager
def mounted(image: str) -> Iterator[Path]:
    """The image's root filesystem, read-only (podman image mount)."""
    podman = images.podman_command()
    path = subprocess.run([*podman, "image", "mount", image], capture_output=True, text=True, check=True)
    try:
        yield Path(path.stdout.strip())
    finally:
        subprocess.run([*podman, "image", "unmount", image], capture_output=True, check=False)


@pytest.fixture(params=sorted(IMAGES))
def image(request: pytest.FixtureRequest, require_image: Callable[[str], str]) -> str:
    return require_image(IMAGES[request.param])


def test_oci_labels(image: str) -> None:
    labels = images.inspect(image)["Config"]["Labels"]
    title = image.rsplit("/", 1)[-1].split(":")[0]
    assert labels["org.opencontainers.image.title"] == title
    assert labels["org.opencontainers.image.version"] == images.VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")
    assert labels["org.opencontainers.image.base.name"]


def test_no_compilers_caches_installers_or_secrets(image: str) -> None:
    kind = "operator" if image == images.OPERATOR_IMAGE else "runner"
    with mounted(image) as root:
        binaries = [root / d for d in ("usr/bin", "usr/local/bin", "opt/venv/bin")]
        found = [str(d / name) for d in binaries for name in COMPILERS if (d / name).exists()]
        found += [str(p) for d in binaries if d.is_dir() for p in d.glob("*-linux-gnu-g*")]
        assert not found, f"compilers or build tools in the image: {found}"
        for cache in ("root/.cache", "var/cache/apt/archives", "tmp", "build", "dist", "src", "run/secrets"):
            entries = [p.name for p in (root / cache).glob("*")] if (root / cache).is_dir() else []
            assert entries in ([], ["partial"], ["lock", "partial"]), f"/{cache} holds {entries}"
        lists = [p.name for p in (root / "var/lib/apt/lists").glob("*") if p.name not in ("lock", "partial")]
        assert not lists, "apt package lists left in the image"
        site = next((root / "opt/venv/lib").glob("python3.*/site-packages"))
        # No installer; setuptools only where the lock holds it (torch depends on it).
        lock = (images.REPO / "requirements" / f"{kind}.txt").read_text()
        unwanted = [n for n in ("pip", "setuptools", "wheel") if f"\n{n}==" not in lock]
        installers = [name for name in unwanted if (site / name).exists()]
        assert not installers and not (root / "opt/venv/bin/pip").exists(), installers
    history = subprocess.run(
        [*images.podman_command(), "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for secret in filter(None, (os.environ.get("PIP_INDEX_URL"), os.environ.get("PIP_EXTRA_INDEX_URL"))):
        assert secret not in history
    assert "--secret" not in history  # secrets are mounted at build time, never recorded
