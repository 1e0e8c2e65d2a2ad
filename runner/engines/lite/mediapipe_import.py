"""Import mediapipe's face mesh and face detector without the rest of mediapipe.

`import mediapipe` runs the package's __init__, which imports every solution and their
drawing utilities, and those import matplotlib.pyplot: about a second of a lite render's
cold start for code the engine never calls. When mediapipe is not imported yet, its two
package __init__s on the way (`mediapipe` and `mediapipe.python.solutions`) are replaced
by lazy stand-ins: the face modules load as usual, and whatever a later `import mediapipe`
user asks for (`mp.solutions.drawing_utils`, `mp.tasks`, `mp.Image`) is imported on first
access (PEP 562 module __getattr__), so other users of mediapipe keep working.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import version
from types import ModuleType

_ROOT = "mediapipe"
_SOLUTIONS = "mediapipe.python.solutions"
# Names the real mediapipe/__init__.py binds to something other than a same-named submodule.
_ROOT_ALIASES = {"solutions": _SOLUTIONS, "tasks": "mediapipe.tasks.python"}


def _lazy_package(name: str, aliases: dict[str, str], fallback: str | None) -> ModuleType:
    """The package `name` without running its __init__: attributes are its submodules, the
    aliased modules, or (last) attributes of the `fallback` module, imported when first used."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    module = importlib.util.module_from_spec(spec)

    def lazy_attribute(attr: str) -> object:
        if attr.startswith("__"):
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        target = aliases.get(attr, f"{name}.{attr}")
        try:
            value: object = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name != target or fallback is None:
                raise AttributeError(f"module {name!r} has no attribute {attr!r}") from exc
            value = getattr(importlib.import_module(fallback), attr)
        setattr(module, attr, value)
        return value

    module.__getattr__ = lazy_attribute  # type: ignore[method-assign]
    return module


def face_modules() -> tuple[ModuleType, ModuleType]:
    """mediapipe.python.solutions.face_mesh and .face_detection, imported as cheaply as possible
    (the usual full import when mediapipe is already imported)."""
    if _ROOT not in sys.modules:
        root = _lazy_package(_ROOT, _ROOT_ALIASES, fallback="mediapipe.python")
        root.__version__ = version(_ROOT)  # type: ignore[attr-defined]
        sys.modules[_ROOT] = root
        if _SOLUTIONS not in sys.modules:
            python = importlib.import_module("mediapipe.python")  # the framework bindings: cheap
            solutions = _lazy_package(_SOLUTIONS, {}, fallback=None)
            sys.modules[_SOLUTIONS] = solutions
            python.solutions = solutions  # type: ignore[attr-defined]
            root.solutions = solutions  # type: ignore[attr-defined]
    face_mesh = importlib.import_module(f"{_SOLUTIONS}.face_mesh")
    face_detection = importlib.import_module(f"{_SOLUTIONS}.face_detection")
    return face_mesh, face_detection
