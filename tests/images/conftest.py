"""Tests on the built images (`make images` builds them; `make test` does so first).

They run the images with podman as the pods run them: the image's non-root user, a
read-only root filesystem, only the mounted folders writable, no network.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cluster import images


def built(image: str) -> str:
    if images.podman() is None:
        pytest.skip("podman is not installed: make system-deps-images")
    if not images.image_exists(image):
        pytest.fail(f"{image} is not built: {images.BUILD_HINT}")
    return image


@pytest.fixture(scope="session")
def operator_image() -> str:
    return built(images.OPERATOR_IMAGE)


@pytest.fixture(scope="session")
def runner_image() -> str:
    return built(images.RUNNER_IMAGE)


@pytest.fixture(scope="session")
def require_image() -> Callable[[str], str]:
    """``require_image(name)``: the name, once the image is known to be built."""
    return built
