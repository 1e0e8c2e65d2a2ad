"""The CPU `lite` engine: landmark-driven portrait animation timed from the speech."""

from multitalk.runner.engines.lite.engine import LiteEngine

__all__ = ["LiteEngine"]
