"""Speech -> wav2vec2 features at the video frame rate, the way MultiTalk was trained.

16 kHz mono, loudness-normalised to -23 LUFS; the CNN features (50 Hz) are linearly
interpolated to the number of video frames *before* the transformer encoder, and the
outputs of all encoder layers are stacked: [frames, layers, 768].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16_000
TARGET_LUFS = -23.0
MODEL_FPS = 25  # MultiTalk's training frame rate


def loudness_normalize(speech: npt.NDArray[np.float32], rate: int = SAMPLE_RATE) -> npt.NDArray[np.float32]:
    """Scale to -23 LUFS integrated loudness; silence (or clips too short to measure) is returned unchanged."""
    import pyloudnorm

    meter = pyloudnorm.Meter(rate)
    try:
        loudness = meter.integrated_loudness(speech.astype(np.float64))
    except ValueError:  # shorter than one 400 ms gating block
        return speech
    if not np.isfinite(loudness) or abs(loudness) > 100:
        return speech
    out = pyloudnorm.normalize.loudness(speech.astype(np.float64), loudness, TARGET_LUFS)
    return np.asarray(out, dtype=np.float32)


def video_frames(samples: int, fps: int = MODEL_FPS, rate: int = SAMPLE_RATE) -> int:
    return int(samples / rate * fps)


class AudioEncoder:
    """chinese-wav2vec2-base (any wav2vec2 checkpoint folder) as MultiTalk uses it."""

    def __init__(self, folder: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        self.model = Wav2Vec2Model.from_pretrained(str(folder)).to(device, dtype).eval()
        has_preprocessor = (folder / "preprocessor_config.json").is_file()
        self.extractor = (
            Wav2Vec2FeatureExtractor.from_pretrained(str(folder)) if has_preprocessor else Wav2Vec2FeatureExtractor()
        )
        self.device, self.dtype = device, dtype

    @torch.no_grad()
    def __call__(self, speech: npt.NDArray[np.float32], fps: int = MODEL_FPS) -> torch.Tensor:
        """Loudness-normalised 16 kHz speech -> [frames, layers, hidden] on the CPU in float32."""
        frames = video_frames(len(speech), fps)
        values = np.asarray(self.extractor(speech, sampling_rate=SAMPLE_RATE).input_values).reshape(-1)
        audio = torch.from_numpy(values).float()[None].to(self.device, self.dtype)
        cnn = self.model.feature_extractor(audio)  # B, C, T50
        cnn = F.interpolate(cnn, size=frames, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = self.model.feature_projection(cnn)
        return self._encoder_layers(hidden).transpose(0, 1).float().cpu()

    def _encoder_layers(self, hidden: torch.Tensor) -> torch.Tensor:
        """Outputs of every encoder layer [layers, frames, hidden] (post-norm wav2vec2 encoder, as in -base).

        Walked layer by layer so it does not depend on how a transformers version collects hidden states.
        """
        encoder = self.model.encoder
        if getattr(self.model.config, "do_stable_layer_norm", False):
            raise ValueError("expected a post-norm wav2vec2 encoder (wav2vec2-base); got a stable-layer-norm one")
        hidden = encoder.layer_norm(hidden + encoder.pos_conv_embed(hidden))
        outputs = []
        for layer in encoder.layers:
            result = layer(hidden)
            hidden = result[0] if isinstance(result, tuple) else result
            outputs.append(hidden[0])
        return torch.stack(outputs)
