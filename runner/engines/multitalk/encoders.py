"""The frozen Wan2.1 I2V encoders (umT5, CLIP ViT-H, Wan VAE) from the model cache, as pipeline callables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .model_files import ModelFiles
from .pipeline import Encoders

TEXT_LEN = 512


def load_vae(path: Path, dtype: torch.dtype, config: dict[str, Any] | None = None) -> Any:
    """AutoencoderKLWan from the Diffusers folder, or from Wan2.1_VAE.pth through diffusers' converter.

    `config` only matters for .pth files: AutoencoderKLWan's defaults are Wan2.1's VAE.
    """
    from diffusers import AutoencoderKLWan

    if path.is_dir():
        return AutoencoderKLWan.from_pretrained(str(path), torch_dtype=dtype).eval()
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    with torch.device("meta"):
        vae = AutoencoderKLWan(**(config or {}))
    vae.load_state_dict(convert_wan_vae_to_diffusers(checkpoint), strict=True, assign=True)
    return vae.to(dtype).eval()


def _latent_stats(vae: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, z_dim, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device).view(1, z_dim, 1, 1, 1)
    return mean, std


@torch.no_grad()
def vae_encode(vae: Any, video: torch.Tensor) -> torch.Tensor:
    """[1, 3, T, H, W] in [-1, 1] -> normalised latents (mode of the posterior), float32, on the VAE's device."""
    device = next(vae.parameters()).device
    latents: torch.Tensor = vae.encode(video.to(device, torch.float32)).latent_dist.mode().float()
    mean, std = _latent_stats(vae, device)
    return (latents - mean) / std


@torch.no_grad()
def vae_decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents -> [1, 3, T, H, W] clamped to [-1, 1], float32."""
    device = next(vae.parameters()).device
    mean, std = _latent_stats(vae, device)
    video: torch.Tensor = vae.decode(latents.to(device).float() * std + mean).sample
    return video.float().clamp(-1, 1)


class Wan21Encoders:
    """Loads the encoders once; `device_for(module)` lets an offload policy move them on demand."""

    def __init__(self, files: ModelFiles, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> None:
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, UMT5EncoderModel

        if files.encoders_dir is None or files.vae is None:
            raise FileNotFoundError("; ".join(files.problems))
        root = files.encoders_dir
        self.device, self.dtype = device, dtype
        self.tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
        self.text_encoder = UMT5EncoderModel.from_pretrained(str(root / "text_encoder"), dtype=dtype).eval()
        processor = CLIPImageProcessor.from_pretrained(str(root / "image_processor"))
        self.clip_mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
        self.clip_std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
        self.image_encoder = CLIPVisionModel.from_pretrained(str(root / "image_encoder"), dtype=dtype).eval()
        # The Wan VAE runs in float32 as in the reference (bf16 visibly degrades decoded frames).
        self.vae = load_vae(files.vae, torch.float32)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"text_encoder": self.text_encoder, "image_encoder": self.image_encoder, "vae": self.vae}

    @torch.no_grad()
    def encode_text(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer(
            [prompt.strip()],
            padding="max_length",
            max_length=TEXT_LEN,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        hidden = self.text_encoder(tokens.input_ids.to(device), tokens.attention_mask.to(device)).last_hidden_state
        length = int(tokens.attention_mask.sum())
        out: torch.Tensor = hidden[0, :length].to(self.device)
        return out

    @torch.no_grad()
    def encode_image(self, frame: torch.Tensor) -> torch.Tensor:
        """[1, 3, 1, H, W] in [-1, 1] -> penultimate CLIP layer [1, 257, 1280] (open-clip's 31 of 32 blocks)."""
        device = next(self.image_encoder.parameters()).device
        size = int(self.image_encoder.config.image_size)  # 224 for ViT-H/14
        pixels = F.interpolate(frame[:, :, 0].float(), size=(size, size), mode="bicubic", align_corners=False)
        pixels = ((pixels + 1) / 2 - self.clip_mean.to(pixels.device)) / self.clip_std.to(pixels.device)
        result = self.image_encoder(pixel_values=pixels.to(device, self.dtype), output_hidden_states=True)
        out: torch.Tensor = result.hidden_states[-2].to(self.device)
        return out

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        return vae_encode(self.vae, video).to(self.device)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return vae_decode(self.vae, latents).to(self.device)

    def as_encoders(self) -> Encoders:
        return Encoders(self.encode_text, self.encode_image, self.encode_video, self.decode_latents)
