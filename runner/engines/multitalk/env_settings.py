"""The multitalk engine's MULTITALK_* environment settings (set on the runner container), typed.

Read once per engine; a bad value is a configuration error, not a passing failure: it
makes the engine *misconfigured*, which `check` reports and which fails a render that
would use the engine with exit 4 (permanent, no retries) naming the variable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from multitalk.runner.errors import EngineUnavailable

PREFIX = "MULTITALK_"
AREAS = {"480": 640 * 640, "720": 960 * 960}


class MultiTalkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    # none: everything on the GPU; model: each model on the GPU only while used;
    # sequential: transformer blocks streamed from the CPU one at a time (lowest VRAM).
    offload: Literal["none", "model", "sequential"] = "none"
    # Generation area before scaling to the video size (about 640x640 or 960x960 pixels).
    resolution: Literal["480", "720"] = "480"
    color_match: float = Field(default=1.0, ge=0.0, le=1.0)  # colour matching to the reference
    apg: bool = False  # adaptive projected guidance
    device: Literal["cuda", "cpu"] = "cuda"  # cpu: development and tests with tiny checkpoints
    area: int | None = Field(default=None, ge=16 * 16)  # pixels; overrides resolution (tests)
    check_geometry: bool = True  # false: accept checkpoints that are not the published 14B (tests)

    @property
    def generation_area(self) -> int:
        return self.area if self.area is not None else AREAS[self.resolution]


class EngineMisconfigured(EngineUnavailable):
    """A MULTITALK_* setting has a value the engine cannot use (exit 4: permanent)."""


def load_settings() -> MultiTalkSettings:
    try:
        return MultiTalkSettings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            name = PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}={err.get('input')!r}: {str(err['msg']).removeprefix('Value error, ')}")
        raise EngineMisconfigured("; ".join(problems), "engine") from exc
