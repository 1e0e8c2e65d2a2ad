"""Sizes of the two images `make images` built: uncompressed, as podman stores them, with
the base image's share and, for the runner, the share of torch and its CUDA wheels.

    python benchmarks/image_sizes.py     # or: make image-sizes

Target (a figure, not a test): the operator image at 200 MB or less.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster import images

# What "torch + CUDA" counts in the runner's site-packages.
TORCH_AND_CUDA = ("torch", "triton", "nvidia", "cuda", "functorch", "torchgen")
MB = 1e6


def _bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def _size(image: str) -> int:
    return int(images.inspect(image)["Size"])


def _base(image: str) -> str:
    return str(images.inspect(image)["Config"]["Labels"].get("org.opencontainers.image.base.name", ""))


def _site_packages_shares(image: str) -> tuple[int, int]:
    """(bytes of torch + CUDA, bytes of all of site-packages) in the image."""
    podman = images.podman_command()
    mount = subprocess.run([*podman, "image", "mount", image], capture_output=True, text=True, check=True)
    root = Path(mount.stdout.strip())
    try:
        site = next((root / "opt" / "venv" / "lib").glob("python3.*/site-packages"))
        heavy = sum(_bytes(p) for p in site.iterdir() if p.is_dir() and p.name.split("-")[0] in TORCH_AND_CUDA)
        return heavy, _bytes(site)
    finally:
        subprocess.run([*podman, "image", "unmount", image], capture_output=True, check=False)


def main() -> int:
    missing = [i for i in (images.OPERATOR_IMAGE, images.RUNNER_IMAGE) if not images.image_exists(i)]
    if missing:
        print(f"not built: {', '.join(missing)}; {images.BUILD_HINT}")
        return 1
    print(f"{'image':40} {'size MB':>9} {'base MB':>9} {'own MB':>9}")
    for image in (images.OPERATOR_IMAGE, images.RUNNER_IMAGE):
        size, base = _size(image), _base(image)
        base_size = _size(base) if base and images.image_exists(base) else 0
        print(f"{image:40} {size / MB:9.0f} {base_size / MB:9.0f} {(size - base_size) / MB:9.0f}")
    operator = _size(images.OPERATOR_IMAGE)
    verdict = "met" if operator <= 200 * MB else "missed"
    print(f"operator image: {operator / MB:.0f} MB (target 200 MB or less: {verdict})")
    heavy, site = _site_packages_shares(images.RUNNER_IMAGE)
    runner = _size(images.RUNNER_IMAGE)
    print(
        f"runner image: {runner / MB:.0f} MB, of which torch + CUDA wheels {heavy / MB:.0f} MB "
        f"({heavy / runner:.0%}); all Python packages {site / MB:.0f} MB ({site / runner:.0%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
