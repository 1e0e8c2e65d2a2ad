"""A build that cannot succeed stops with what is missing and how to provide it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cluster import images

pytestmark = [pytest.mark.images, pytest.mark.slow]

# The base `make images` builds on (exported by the Makefile; the stand-in by default).
BASE = os.environ.get("MULTITALK_TEST_BASE_IMAGE", "localhost/multitalk-base:bookworm-python3.11")


@pytest.fixture(scope="module")
def base_image() -> str:
    if images.podman() is None:
        pytest.skip("podman is not installed: make system-deps-images")
    if not images.image_exists(BASE):
        pytest.fail(f"{BASE} is missing: {images.BUILD_HINT}")
    return BASE


def build(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The operator image's build stage, rebuilt (no layer cache), with the Makefile's options."""
    command = [*images.podman_command(), "build", "--no-cache", "--target", "build", "-f", "Dockerfile.operator"]
    return subprocess.run(
        [*command, *args, "."],
        cwd=images.REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_missing_base_image_names_it_and_the_ways_to_provide_it() -> None:
    missing = "localhost/multitalk-no-such-base:0"
    result = subprocess.run(
        ["make", "--no-print-directory", "images", f"BASE_IMAGE={missing}"],
        cwd=images.REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"the base image {missing} is not here and could not be pulled" in result.stderr
    assert "make base-image" in result.stderr and "podman load" in result.stderr


def test_python_other_than_the_locks_is_refused(base_image: str, tmp_path: Path) -> None:
    lock = tmp_path / "runner.txt"
    lock.write_text("# Python 3.12 (the images' Python must match).\ntorch==2.15.0\n")
    script = images.REPO / "requirements" / "image-install.sh"
    result = images.run(
        base_image,
        "/build/image-install.sh",
        "python",
        "/build/runner.txt",
        user="0:0",
        entrypoint=["sh"],
        volumes={str(script): "/build/image-install.sh:ro", str(lock): "/build/runner.txt:ro"},
    )
    assert result.returncode == 1
    assert "the base image's python3 is 3.11 but runner.txt is a Python 3.12 lock" in result.stderr
    assert "BASE_IMAGE=python:3.12-slim-bookworm" in result.stderr


def test_no_network_stops_the_pip_step_with_what_to_provide(base_image: str) -> None:
    # Chroot isolation shares the host's network; runc gives the build steps none at all.
    result = build(
        "--isolation", "oci", *images.limit_options(), "--network", "none", "--build-arg", f"BASE_IMAGE={base_image}"
    )
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "error: pip install failed in this image build" in out, out[-3000:]
    assert "No network, or the index is unreachable" in out and "PIP_INDEX_URL=" in out


def test_unreachable_index_is_named_without_its_credentials(base_image: str) -> None:
    # The index arrives as a build secret; nothing listens on port 9.
    index = "http://builder:s3cr3t-token@127.0.0.1:9/simple"
    result = build(
        "--isolation",
        "chroot",
        "--secret",
        "id=pip_index_url,env=TEST_PIP_INDEX_URL",
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        env={"TEST_PIP_INDEX_URL": index},
    )
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "index: http://***@127.0.0.1:9/simple" in out, out[-3000:]
    assert "s3cr3t-token" not in out
