"""The placeholder engine: a labelled test card with the speech animated on it.

No model, no animation of the face: it exists to check the whole pipeline (storage,
decoding, encoding, A/V sync, status) anywhere. The card says "placeholder: no model" so
nobody mistakes it for a render; a level meter and a scrolling waveform follow the speech
so sync can be judged by eye and ear.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from multitalk.runner.engines.base import (
    ENGINE_SAMPLE_RATE,
    Audio,
    Availability,
    Engine,
    EngineInfo,
    Image,
    ProgressFn,
    RenderInputs,
)

LABEL = "placeholder: no model"
WINDOW_SECONDS = 2.0  # waveform shown around the current instant
WAVE_COLOUR = np.array([80, 220, 120], dtype=np.uint8)
LEVEL_COLOUR = np.array([255, 190, 40], dtype=np.uint8)
PLAYHEAD_COLOUR = np.array([255, 255, 255], dtype=np.uint8)


def frame_levels(mix: Audio, fps: int, frames: int) -> npt.NDArray[np.float32]:
    """Loudness of each frame's slice of speech, 0..1 on a -50..0 dBFS scale."""
    hop = ENGINE_SAMPLE_RATE / fps
    levels = np.zeros(frames, dtype=np.float32)
    for i in range(frames):
        a, b = round(i * hop), round((i + 1) * hop)
        chunk = mix[a:b]
        if len(chunk):
            rms = float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64))))
            levels[i] = np.clip((20 * np.log10(max(rms, 1e-6)) + 50) / 50, 0.0, 1.0)
    return levels


def envelope(mix: Audio, bin_samples: int) -> npt.NDArray[np.float32]:
    """Peak amplitude per bin of bin_samples samples."""
    n = -(-len(mix) // bin_samples)
    padded = np.zeros(n * bin_samples, dtype=np.float32)
    padded[: len(mix)] = np.abs(mix)
    peaks: npt.NDArray[np.float32] = padded.reshape(n, bin_samples).max(axis=1)
    return peaks


class PlaceholderEngine(Engine):
    name = "placeholder"
    resumable = True  # each frame is a function of prepare() and its index

    def availability(self) -> Availability:
        return Availability(True, "always available (numpy and Pillow only)")

    def prepare(self, inputs: RenderInputs, progress: ProgressFn) -> EngineInfo:
        w, h = inputs.width, inputs.height
        self._card = self._card_background(inputs)
        self._levels = frame_levels(inputs.mix, inputs.fps, inputs.frames)
        self._bin = max(1, round(WINDOW_SECONDS * ENGINE_SAMPLE_RATE / w))
        self._env = envelope(inputs.mix, self._bin)
        band = max(8, h // 5)
        self._band_top = h - band - max(4, h // 40)
        self._band_half = band / 2
        self._band_dist = np.abs(np.arange(band, dtype=np.float32) - (band - 1) / 2)[:, None]
        self._meter_w = max(6, w // 40)
        progress(1.0)
        return EngineInfo(device="cpu", precision="uint8", feature_shape=(len(self._env),))

    def _card_background(self, inputs: RenderInputs) -> Image:
        w, h = inputs.width, inputs.height
        if inputs.image is not None:
            base = (inputs.image.astype(np.float32) * 0.55).astype(np.uint8)
        else:
            ramp = np.linspace(40, 90, h, dtype=np.float32)[:, None, None]
            base = np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)
        card = PILImage.fromarray(base)
        draw = ImageDraw.Draw(card)
        size = max(10, h // 14)
        font = ImageFont.load_default(size=size)
        pad = max(4, size // 3)
        left, top, right, bottom = draw.textbbox((0, 0), LABEL, font=font)
        box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
        x0, y0 = (w - box_w) // 2, max(4, h // 20)
        draw.rectangle((x0, y0, x0 + box_w, y0 + box_h), fill=(200, 30, 30))
        draw.text((x0 + pad - left, y0 + pad - top), LABEL, font=font, fill=(255, 255, 255))
        small = ImageFont.load_default(size=max(8, size // 2))
        info = f"{w}x{h}  {inputs.fps} fps  {inputs.duration_seconds:.2f} s"
        draw.text((x0, y0 + box_h + pad), info, font=small, fill=(230, 230, 230))
        return np.asarray(card, dtype=np.uint8).copy()

    def frames(self, inputs: RenderInputs, progress: ProgressFn, start: int = 0, state: bytes = b"") -> Iterator[Image]:
        w, h = inputs.width, inputs.height
        half_cols = w // 2
        band_h = self._band_dist.shape[0]
        meter_x = w - self._meter_w - max(2, w // 80)
        meter_h = h - 2 * max(4, h // 20)
        meter_bottom = h - max(4, h // 20)
        padded_env = np.concatenate(
            [np.zeros(half_cols, np.float32), self._env, np.zeros(w - half_cols + 1, np.float32)]
        )
        step = max(1, inputs.frames // 100)
        for i in range(start, inputs.frames):
            frame = self._card.copy()
            centre = round((i + 0.5) / inputs.fps * ENGINE_SAMPLE_RATE / self._bin)
            amps = np.minimum(padded_env[centre : centre + w] * 1.6, 1.0) * self._band_half
            band = frame[self._band_top : self._band_top + band_h]
            band[self._band_dist <= np.maximum(amps, 0.75)[None, :]] = WAVE_COLOUR
            band[:, half_cols] = PLAYHEAD_COLOUR
            level_px = int(self._levels[i] * meter_h)
            if level_px:
                frame[meter_bottom - level_px : meter_bottom, meter_x : meter_x + self._meter_w] = LEVEL_COLOUR
            if i % step == 0:
                progress(i / inputs.frames)
            yield frame
        progress(1.0)
