"""Engine names -> implementations, imported lazily so heavy dependencies load only when used."""

from __future__ import annotations

import importlib
from pathlib import Path

from multitalk.runner.engines.base import Availability, Engine

# Best first: `auto` picks the first available engine in this order.
ENGINES: dict[str, str] = {
    "multitalk": "multitalk.runner.engines.multitalk:MultiTalkEngine",
    "lite": "multitalk.runner.engines.lite:LiteEngine",
    "placeholder": "multitalk.runner.engines.placeholder:PlaceholderEngine",
}


def create_engine(name: str, model_dir: Path) -> tuple[Engine | None, Availability]:
    """Instantiate an engine, or say why it cannot be (missing extra, no GPU, no weights...)."""
    module_name, _, class_name = ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return None, Availability(False, f"not installed: {exc}")
    engine: Engine = getattr(module, class_name)(model_dir)
    return engine, engine.availability()
