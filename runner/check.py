"""`multitalk-runner check`: what can run here, and why not (JSON for people and probes)."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from multitalk.runner.engines.registry import ENGINES, create_engine

PACKAGES = ("multitalk-operator", "av", "numpy", "pillow", "boto3", "torch", "transformers", "diffusers")
MODEL_SUFFIXES = (".safetensors", ".pth", ".bin", ".ckpt", ".onnx", ".pt", ".json")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# The CUDA libraries torch loads on import (from the nvidia-* wheels), by their file names.
CUDA_LIBRARIES = {"cudart": "libcudart.so", "cublas": "libcublas.so", "cudnn": "libcudnn.so", "nccl": "libnccl.so"}


def _loaded_cuda_libraries(maps: str) -> dict[str, str | None]:
    """File name of each CUDA library mapped into this process (/proc/self/maps), or None."""
    names = {line.rsplit("/", 1)[-1] for line in maps.splitlines() if "/" in line}
    return {
        key: min((n for n in names if n.startswith(prefix)), default=None) for key, prefix in CUDA_LIBRARIES.items()
    }


def _cuda_libraries() -> dict[str, Any]:
    """CUDA libraries present in this environment: those torch loaded, whether or not a
    device is there (the driver comes from the node at run time)."""
    import torch

    maps = Path("/proc/self/maps")
    loaded = _loaded_cuda_libraries(maps.read_text()) if maps.exists() else {}
    return {"cudaBuild": torch.version.cuda, "cudaLibraries": loaded}


def _gpu() -> dict[str, Any]:
    """CUDA facts through torch when it is installed; never fails."""
    try:
        import torch
    except ImportError:
        return {"torch": False, "cuda": False, "reason": "torch is not installed"}
    info: dict[str, Any] = {"torch": True, "cuda": bool(torch.cuda.is_available()), **_cuda_libraries()}
    if info["cuda"]:
        info["devices"] = [
            {
                "index": i,
                "name": torch.cuda.get_device_name(i),
                "memoryGiB": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
            }
            for i in range(torch.cuda.device_count())
        ]
        info["cudaVersion"] = torch.version.cuda
    else:
        info["reason"] = "torch sees no CUDA device"
    return info


def _model_files(model_dir: Path, limit: int = 50) -> dict[str, Any]:
    if not model_dir.is_dir():
        return {"dir": str(model_dir), "exists": False, "files": []}
    files: list[dict[str, Any]] = []
    total = 0
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.suffix in MODEL_SUFFIXES:
            total += 1
            if len(files) < limit:
                files.append({"path": str(path.relative_to(model_dir)), "bytes": path.stat().st_size})
    return {"dir": str(model_dir), "exists": True, "count": total, "files": files, "truncated": total > limit}


def _auto(engines: dict[str, Any]) -> str | None:
    """What `auto` renders with here, as pipeline.select_engine picks it (request checks
    aside): the first available engine, none when a misconfigured one comes first."""
    for name, engine in engines.items():
        if engine.get("misconfigured"):
            return None
        if engine["available"]:
            return name
    return None


def check_report(model_dir: Path) -> dict[str, Any]:
    engines: dict[str, Any] = {}
    for name in ENGINES:
        try:
            _, avail = create_engine(name, model_dir)
            engines[name] = {"available": avail.available, "reason": avail.reason, **avail.details}
            if avail.misconfigured:
                engines[name]["misconfigured"] = True
        except Exception as exc:  # a broken engine must not break the probe
            engines[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {
        "engines": engines,
        "auto": _auto(engines),
        "gpu": _gpu(),
        "models": _model_files(model_dir),
        "versions": _versions(),
    }
