"""MultiTalk's audio additions to Wan: the audio projection model and per-block audio cross-attention.

Key names follow MeiGen's multitalk.safetensors with `blocks.N.` renamed `audio_blocks.N.`
(see weights.audio_key), so the published file loads with a plain rename.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .lrope import audio_key_positions, rope_1d, video_token_positions

AUDIO_WINDOW = 5  # wav2vec frames around each video frame (t-2..t+2)
VAE_TIME_STRIDE = 4  # video frames per latent frame after the first


def group_latent_windows(windows: torch.Tensor, vae_scale: int = VAE_TIME_STRIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-video-frame windows [P, F, W, L, C] -> (first latent frame [P, 1, W, L, C], later ones [P, N, K, L, C]).

    Frame 0 is latent frame 0. Every later latent frame covers `vae_scale` video frames and
    takes the left half of its first frame's window, the centre of the middle frames and the
    right half of its last frame's window: K = W + vae_scale - 1 entries (8 for W=5, 4 frames).
    """
    middle = windows.shape[2] // 2
    first = windows[:, :1]
    later = torch.unflatten(windows[:, 1:], 1, (-1, vae_scale))  # P, N, vae_scale, W, L, C
    head = later[:, :, 0, : middle + 1]
    centre = later[:, :, 1:-1, middle]
    tail = later[:, :, -1, middle:]
    return first, torch.cat([head, centre, tail], dim=2)


class AudioProjection(nn.Module):
    """Audio windows -> `context_tokens` tokens per latent frame and person."""

    def __init__(
        self, window: int, window_later: int, layers: int, channels: int, hidden: int, out_dim: int, tokens: int
    ) -> None:
        super().__init__()
        self.tokens, self.out_dim = tokens, out_dim
        self.proj1 = nn.Linear(window * layers * channels, hidden)
        self.proj1_vf = nn.Linear(window_later * layers * channels, hidden)
        self.proj2 = nn.Linear(hidden, hidden)
        self.proj3 = nn.Linear(hidden, tokens * out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, first: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        """first [P, 1, W, L, C], later [P, N, K, L, C] -> [P, 1 + N, tokens, out_dim]."""
        x = torch.cat([F.relu(self.proj1(first.flatten(2))), F.relu(self.proj1_vf(later.flatten(2)))], dim=1)
        x = self.proj3(F.relu(self.proj2(x)))
        out: torch.Tensor = self.norm(torch.unflatten(x, -1, (self.tokens, self.out_dim)))
        return out


class AudioCrossAttention(nn.Module):
    """Frame-local cross-attention from video tokens to the audio tokens of the same latent frame.

    With two persons the queries and keys are rotated by L-RoPE so each person's tokens
    listen to their own voice.
    """

    def __init__(self, dim: int, audio_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        audio: torch.Tensor,
        frames: int,
        attention_map: torch.Tensor | None,
        offset: int = 0,
        total: int | None = None,
    ) -> torch.Tensor:
        """x [1, S, dim], audio [frames, A, audio_dim]; map [3, total] for 2 persons.

        Under sequence parallelism x holds tokens offset .. offset + S of `total`; a range that
        starts or ends inside a latent frame is padded to whole frames for the batched
        attention and cut back afterwards (queries are independent, so padding changes nothing).
        """
        batch, seq, dim = x.shape
        total = seq if total is None else total
        per_frame = total // frames
        head_dim = dim // self.heads
        q = self.q_linear(x).view(batch, seq, self.heads, head_dim).transpose(1, 2)  # B, H, S, D
        k, v = self.kv_linear(audio).view(frames, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)  # F, H, A, D
        if attention_map is not None:
            q = rope_1d(q, video_token_positions(attention_map)[offset : offset + seq])
            k = rope_1d(k.transpose(0, 1).flatten(1, 2), audio_key_positions(k.shape[2], frames, k.device))
            k = torch.unflatten(k, 1, (frames, -1)).transpose(0, 1)
        first, last = offset // per_frame, (offset + seq - 1) // per_frame + 1
        lead, trail = offset - first * per_frame, last * per_frame - offset - seq
        if lead or trail:
            q = F.pad(q, (0, 0, lead, trail))
        q = torch.unflatten(q, 2, (last - first, per_frame)).transpose(1, 2).flatten(0, 1)  # B*F, H, S/F, D
        k, v = k[first:last].repeat(batch, 1, 1, 1), v[first:last].repeat(batch, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = torch.unflatten(out, 0, (batch, last - first)).permute(0, 1, 3, 2, 4).reshape(batch, -1, dim)
        projected: torch.Tensor = self.proj(out[:, lead : lead + seq])
        return projected


class AudioBlock(nn.Module):
    """What MultiTalk adds to one Wan block: affine LayerNorm, then audio cross-attention (plain residual)."""

    def __init__(self, dim: int, audio_dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.norm_x = nn.LayerNorm(dim, eps=eps)
        self.audio_cross_attn = AudioCrossAttention(dim, audio_dim, heads)

    def forward(
        self,
        x: torch.Tensor,
        audio: torch.Tensor,
        frames: int,
        attention_map: torch.Tensor | None,
        offset: int = 0,
        total: int | None = None,
    ) -> torch.Tensor:
        normed = F.layer_norm(
            x.float(),
            self.norm_x.normalized_shape,
            self.norm_x.weight.float(),
            self.norm_x.bias.float(),
            self.norm_x.eps,
        ).type_as(x)
        out: torch.Tensor = self.audio_cross_attn(normed, audio, frames, attention_map, offset, total)
        return out


class MultiTalkAudioAdapter(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """All audio weights of MultiTalk: the projection model and one AudioBlock per Wan block."""

    @register_to_config  # type: ignore[untyped-decorator]
    def __init__(
        self,
        num_layers: int = 40,
        dim: int = 5120,
        num_heads: int = 40,
        eps: float = 1e-6,
        audio_window: int = AUDIO_WINDOW,
        vae_scale: int = VAE_TIME_STRIDE,
        wav2vec_layers: int = 12,
        wav2vec_dim: int = 768,
        intermediate_dim: int = 512,
        output_dim: int = 768,
        context_tokens: int = 32,
    ) -> None:
        super().__init__()
        self.audio_proj = AudioProjection(
            audio_window,
            audio_window + vae_scale - 1,
            wav2vec_layers,
            wav2vec_dim,
            intermediate_dim,
            output_dim,
            context_tokens,
        )
        self.audio_blocks = nn.ModuleList(AudioBlock(dim, output_dim, num_heads, eps) for _ in range(num_layers))

    def audio_tokens(self, windows: torch.Tensor) -> torch.Tensor:
        """Windows [P, F, W, L, C] -> tokens [latent frames, P * tokens, out_dim], persons side by side."""
        first, later = group_latent_windows(windows, self.config.vae_scale)
        tokens: torch.Tensor = self.audio_proj(first, later)  # P, N, T, C
        return tokens.transpose(0, 1).flatten(1, 2)
