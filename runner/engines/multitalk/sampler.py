"""Flow-matching Euler sampling with MultiTalk's text + audio classifier-free guidance.

Timesteps run from 1000 to 0 (shifted towards the noisy end); the model predicts the
flow v, and each step moves latents by -v * dt. Guidance per step:
- text scale != 1 (3 evaluations): uncond + s_t (cond - drop_text) + s_a (drop_text - uncond)
- text scale == 1 (2 evaluations): drop_audio + s_a (cond - drop_audio)
Optional APG (adaptive projected guidance) replaces each difference by its momentum-
averaged, norm-clipped part orthogonal to the conditional prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000

# (latents, t, branches) -> flow per branch; all branches of a step at once so they can run in parallel.
Predict = Callable[[torch.Tensor, torch.Tensor, tuple[str, ...]], dict[str, torch.Tensor]]


def shifted_timesteps(steps: int, shift: float, num_train: int = NUM_TRAIN_TIMESTEPS) -> list[torch.Tensor]:
    """steps + 1 timesteps from ~1000 down to 0 with the flow shift s*t / (1 + (s-1)*t)."""
    raw = [torch.tensor([float(t)]) for t in np.linspace(num_train, 1, steps, dtype=np.float32)]
    raw.append(torch.tensor([0.0]))
    out = []
    for t in raw:
        frac = t / num_train
        out.append(shift * frac / (1 + (shift - 1) * frac) * num_train)
    return out


def add_noise(clean: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """Rectified-flow interpolation to time t (0 clean .. 1000 pure noise)."""
    sigma = timestep.float() / NUM_TRAIN_TIMESTEPS
    sigma = sigma.view(sigma.shape + (1,) * (noise.ndim - 1))
    return (1 - sigma) * clean + sigma * noise


@dataclass
class MomentumBuffer:
    momentum: float
    average: torch.Tensor | float = 0.0

    def update(self, value: torch.Tensor) -> torch.Tensor:
        self.average = value + self.momentum * self.average
        return self.average


def projected_guidance(
    diff: torch.Tensor, cond: torch.Tensor, buffer: MomentumBuffer | None, norm_threshold: float, eta: float = 0.0
) -> torch.Tensor:
    """APG: momentum, clip the norm over (C, T, H, W), keep the part orthogonal to cond (+ eta * parallel)."""
    if buffer is not None:
        diff = buffer.update(diff)
    if norm_threshold > 0:
        norm = diff.norm(p=2, dim=[-1, -2, -3, -4], keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), norm_threshold / norm)
    dtype = diff.dtype
    d, c = diff.double(), cond.double()
    unit = c / c.norm(p=2, dim=[-1, -2, -3, -4], keepdim=True).clamp_min(1e-12)  # F.normalize over 4 dims
    parallel = (d * unit).sum(dim=[-1, -2, -3, -4], keepdim=True) * unit
    out: torch.Tensor = (d - parallel).to(dtype) + eta * parallel.to(dtype)
    return out


@dataclass
class Guidance:
    text_scale: float = 5.0
    audio_scale: float = 4.0
    apg: bool = False
    apg_momentum: float = -0.75
    apg_norm_threshold: float = 55.0
    _text_buffer: MomentumBuffer | None = field(default=None, repr=False)
    _audio_buffer: MomentumBuffer | None = field(default=None, repr=False)

    @property
    def text_off(self) -> bool:
        return math.isclose(self.text_scale, 1.0)

    def branches(self) -> tuple[str, ...]:
        """Model evaluations per step, in the reference's order."""
        return ("cond", "drop_audio") if self.text_off else ("cond", "drop_text", "uncond")

    def reset(self) -> None:
        if self.apg:
            self._text_buffer = MomentumBuffer(self.apg_momentum)
            self._audio_buffer = MomentumBuffer(self.apg_momentum)

    def combine(self, preds: dict[str, torch.Tensor]) -> torch.Tensor:
        cond = preds["cond"]
        if self.apg:
            if self.text_off:
                audio = projected_guidance(
                    cond - preds["drop_audio"], cond, self._audio_buffer, self.apg_norm_threshold
                )
                return cond + (self.audio_scale - 1) * audio
            text = projected_guidance(cond - preds["drop_text"], cond, self._text_buffer, self.apg_norm_threshold)
            audio = projected_guidance(
                preds["drop_text"] - preds["uncond"], cond, self._audio_buffer, self.apg_norm_threshold
            )
            return cond + (self.text_scale - 1) * text + (self.audio_scale - 1) * audio
        if self.text_off:
            return preds["drop_audio"] + self.audio_scale * (cond - preds["drop_audio"])
        uncond, drop_text = preds["uncond"], preds["drop_text"]
        return uncond + self.text_scale * (cond - drop_text) + self.audio_scale * (drop_text - uncond)


def denoise(
    predict: Predict,
    noise: torch.Tensor,
    timesteps: list[torch.Tensor],
    guidance: Guidance,
    generator: torch.Generator,
    motion_latents: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
    clean_motion: bool = False,
    draw_motion_noise: bool = True,
) -> torch.Tensor:
    """Euler integration from noise [C, T, h, w] to clean latents.

    With motion latents, their frames are pinned before the first step and after every step:
    - MultiTalk (streaming continuation): re-noised to the current time, fresh noise each time;
    - InfiniteTalk (clean_motion): held clean in every evaluation and in the result. Its
      reference draws the re-noising noise all the same on windows after the first (it
      re-noises, then overwrites with the clean latents); draw_motion_noise draws the same
      numbers so the next window's noise comes from the same random stream.
    """
    if not clean_motion and not draw_motion_noise:
        raise ValueError("re-noised motion frames need their noise")
    latent = noise
    guidance.reset()

    def pin(t: torch.Tensor) -> None:
        if motion_latents is None:
            return
        count = motion_latents.shape[1]
        fresh = None
        if draw_motion_noise:
            fresh = torch.randn(
                motion_latents.shape, generator=generator, device=motion_latents.device, dtype=motion_latents.dtype
            )
        if clean_motion or fresh is None:
            latent[:, :count] = motion_latents
        else:
            latent[:, :count] = add_noise(motion_latents, fresh, t)

    pin(timesteps[0])
    steps = len(timesteps) - 1
    for i in range(steps):
        t = timesteps[i].to(latent.device)
        preds = predict(latent, t, guidance.branches())
        flow = guidance.combine(preds)
        dt = (timesteps[i] - timesteps[i + 1]).to(latent.device) / NUM_TRAIN_TIMESTEPS
        latent = latent - flow * dt[:, None, None, None]
        pin(timesteps[i + 1])
        if progress is not None:
            progress(i + 1, steps)
    return latent
