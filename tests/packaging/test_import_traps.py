"""Layout traps that must not come back (docs/design.md, "Layout"): Python started at the
repo root must never import the project's operator/ folder as the standard library's
`operator`, and nothing under tests/ may be importable as `multitalk` or `operator`
(it would shadow the installed package, so the suite could test only an editable checkout)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
SHADOWING = ("operator", "multitalk")


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with only pip in it (the project not installed)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    return venv / "bin" / "python"


@pytest.mark.parametrize("flags", [[], ["-S"]], ids=["site", "no-site"])
def test_fresh_venv_at_the_repo_root_imports_json_and_the_stdlib_operator(fresh_python: Path, flags: list[str]) -> None:
    # -S: no site module, so no .pth hook can import the stdlib operator before the cwd is on sys.path.
    code = "import json, operator; print(operator.__file__); print(json.dumps(operator.or_(1, 2)))"
    result = subprocess.run(
        [str(fresh_python), *flags, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    module, value = result.stdout.splitlines()
    assert Path(module).resolve().parent == STDLIB and value == "3"


def test_fresh_venv_at_the_repo_root_runs_pip(fresh_python: Path) -> None:
    result = subprocess.run(
        [str(fresh_python), "-m", "pip", "--version"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


def _test_folders() -> list[Path]:
    """tests/ (pytest's pythonpath) and every folder pytest may put first on sys.path."""
    folders = [ROOT / "tests"]
    folders += [p for p in sorted((ROOT / "tests").rglob("*")) if p.is_dir() and "__pycache__" not in p.parts]
    return folders


def test_nothing_under_tests_is_a_module_named_like_the_package_or_the_stdlib_operator() -> None:
    # A folder without __init__.py (tests/operator) is a namespace portion: it never wins
    # over a regular module or package, so only regular ones are traps.
    clashes = [
        str((folder / name).relative_to(ROOT))
        for folder in _test_folders()
        for name in SHADOWING
        if (folder / name / "__init__.py").is_file() or (folder / f"{name}.py").is_file()
    ]
    assert not clashes, f"these would shadow `multitalk` or the stdlib `operator`: {clashes}"


def test_with_every_test_folder_on_sys_path_the_package_and_the_stdlib_win() -> None:
    paths = [str(p) for p in _test_folders()]
    code = (
        f"import sys; sys.path[:0] = {paths!r}\n"
        "import operator, multitalk.runner, multitalk.operator\n"
        "print(operator.__file__); print(multitalk.runner.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    operator_file, runner_file = (Path(line).resolve() for line in result.stdout.splitlines())
    assert operator_file.parent == STDLIB
    assert ROOT / "tests" not in runner_file.parents
