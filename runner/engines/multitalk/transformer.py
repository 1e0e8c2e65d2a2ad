"""The MultiTalk denoiser: diffusers' WanTransformer3DModel with MultiTalk's audio blocks interleaved.

Each Wan block runs as in diffusers, with two additions: the self-attention also scores
every video token against the reference (first latent) frame for L-RoPE, and after the
text/image cross-attention an AudioBlock adds frame-local audio cross-attention before
the feed-forward. Attention is torch's scaled_dot_product_attention throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from torch import nn

from .audio_adapter import MultiTalkAudioAdapter
from .lrope import MAX_PERSONS, reference_attention_sums
from .person_masks import token_masks
from .residency import BlockResidency
from .sequence_parallel import SequenceParallel
from .teacache import TeaCache


@dataclass
class Conditioning:
    """Everything but the latents that one model evaluation sees (one CFG branch)."""

    text: torch.Tensor  # [B, 512, text_dim], zero padded as the reference pads
    image: torch.Tensor  # [B, 257, 1280] CLIP tokens of the reference frame
    condition: torch.Tensor  # [B, 20, T, h, w]: 4 mask channels + 16 VAE latents of the known frames
    audio: torch.Tensor  # [P, F, window, layers, channels] per-video-frame wav2vec windows
    masks: torch.Tensor | None = None  # [3, h, w] person 1, person 2, background (latent grid)
    branch: str = "cond"  # name for TeaCache's per-branch state
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's 3-D RoPE on interleaved pairs (as diffusers' WanAttnProcessor applies it)."""
    x1, x2 = torch.unflatten(x, -1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2).type_as(x)


def self_attention(
    attn: Any,
    x: torch.Tensor,
    rotary: tuple[torch.Tensor, torch.Tensor],
    ref_masks: torch.Tensor | None,
    sp: SequenceParallel | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Wan self-attention (diffusers weights); with masks also the [3, S] reference attention map.

    With sequence parallelism x and rotary hold this rank's tokens; attention itself runs on
    all tokens for this rank's heads (Ulysses), and the map covers all tokens on every rank.
    """
    heads = attn.heads
    q = attn.norm_q(attn.to_q(x)).unflatten(2, (heads, -1))
    k = attn.norm_k(attn.to_k(x)).unflatten(2, (heads, -1))
    v = attn.to_v(x).unflatten(2, (heads, -1))
    q, k = _rotate(q, *rotary), _rotate(k, *rotary)
    if sp is not None:
        q, k, v = sp.sequence_to_heads(q), sp.sequence_to_heads(k), sp.sequence_to_heads(v)
    attention_map = None
    if ref_masks is not None:
        with torch.no_grad():
            sums = reference_attention_sums(q, k, ref_masks.shape[1], ref_masks)
            if sp is not None:
                sums = sp.all_reduce(sums)
            attention_map = (sums / heads).t().to(q.dtype)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    if sp is not None:
        out = sp.heads_to_sequence(out.contiguous(), heads)
    out = out.flatten(2).type_as(q)
    projected: torch.Tensor = attn.to_out[0](out)
    return projected, attention_map


def block_forward(
    block: Any,
    audio_block: Any,
    x: torch.Tensor,
    context: torch.Tensor,
    temb: torch.Tensor,
    rotary: tuple[torch.Tensor, torch.Tensor],
    audio_tokens: torch.Tensor,
    frames: int,
    ref_masks: torch.Tensor | None,
    sp: SequenceParallel | None = None,
) -> torch.Tensor:
    """One Wan block (diffusers' WanTransformerBlock order) plus MultiTalk's audio cross-attention."""
    offset, total = (0, x.shape[1]) if sp is None else (sp.local_range(sp.tokens)[0], sp.tokens)
    shift, scale, gate, c_shift, c_scale, c_gate = (block.scale_shift_table + temb.float()).chunk(6, dim=1)
    normed = (block.norm1(x.float()) * (1 + scale) + shift).type_as(x)
    attn_out, attention_map = self_attention(block.attn1, normed, rotary, ref_masks, sp)
    x = (x.float() + attn_out * gate).type_as(x)
    x = x + block.attn2(block.norm2(x.float()).type_as(x), context, None, None)
    x = x + audio_block(x, audio_tokens, frames, attention_map, offset, total)
    normed = (block.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x)
    out: torch.Tensor = (x.float() + block.ffn(normed).float() * c_gate).type_as(x)
    return out


def embed_conditions(
    embedder: Any, timestep: torch.Tensor, cond: Conditioning, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """diffusers' WanTimeTextImageEmbedding, with the sinusoid computed in float64 as the original Wan does.

    At t ~ 1000 float32 angles are off by ~1e-4 rad; float64 keeps us on the reference's numbers.
    """
    half = embedder.timesteps_proj.num_channels // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=timestep.device) / half)
    angles = torch.outer(timestep.to(torch.float64), freqs)
    sinusoid = torch.cat([angles.cos(), angles.sin()], dim=1).float()
    time_dtype = next(iter(embedder.time_embedder.parameters())).dtype
    temb = embedder.time_embedder(sinusoid.to(time_dtype)).to(dtype)
    temb_proj = torch.unflatten(embedder.time_proj(embedder.act_fn(temb)), 1, (6, -1))
    text = embedder.text_embedder(cond.text.to(dtype))
    image = embedder.image_embedder(cond.image.to(dtype))
    return temb, temb_proj, text, image


class MultiTalkTransformer(nn.Module):
    """Wan2.1-I2V transformer + MultiTalk audio adapter, evaluated as one denoiser."""

    def __init__(self, wan: WanTransformer3DModel, audio: MultiTalkAudioAdapter) -> None:
        super().__init__()
        if len(wan.blocks) != len(audio.audio_blocks):
            raise ValueError(f"audio adapter has {len(audio.audio_blocks)} blocks, the transformer {len(wan.blocks)}")
        self.wan = wan
        self.audio = audio
        self.teacache: TeaCache | None = None
        # Sequential CPU offload or FSDP sharding: told before and after each block runs.
        self.block_residency: BlockResidency | None = None
        # Sequence parallelism: this rank's group; the video tokens are split over its ranks.
        self.sequence_parallel: SequenceParallel | None = None

    @property
    def dtype(self) -> torch.dtype:
        dtype: torch.dtype = self.wan.dtype
        return dtype

    def block_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(Wan block, audio block) per layer, in order."""
        return list(zip(self.wan.blocks, self.audio.audio_blocks, strict=True))

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Flow prediction [B, 16, T, h, w] for noisy latents [B, 16, T, h, w] at timestep [B] (0..1000)."""
        wan = self.wan
        persons = cond.audio.shape[0]
        if persons > MAX_PERSONS:
            raise ValueError(f"MultiTalk binds at most {MAX_PERSONS} voices, got {persons}")
        hidden = torch.cat([latents, cond.condition], dim=1).to(wan.dtype)
        batch, _, frames, height, width = hidden.shape
        p_t, p_h, p_w = wan.config.patch_size
        grid = (frames // p_t, height // p_h, width // p_w)
        rotary = wan.rope(hidden)
        x = wan.patch_embedding(hidden).flatten(2).transpose(1, 2).contiguous()
        sp = self.sequence_parallel
        if sp is not None:
            sp.begin(x.shape[1])
            x = sp.shard(x).contiguous()
            rotary = (sp.shard(rotary[0]), sp.shard(rotary[1]))
        temb, temb_proj, text, image = embed_conditions(wan.condition_embedder, timestep, cond, wan.dtype)
        context = torch.cat([image, text], dim=1)
        audio_tokens = self.audio.audio_tokens(cond.audio.to(wan.dtype))
        if audio_tokens.shape[0] != grid[0]:
            raise ValueError(f"audio covers {audio_tokens.shape[0]} latent frames, the video {grid[0]}")
        ref_masks = None
        if persons == 2:
            if cond.masks is None:
                raise ValueError("two persons need class masks")
            ref_masks = token_masks(cond.masks, grid[1], grid[2]).to(x.device, x.dtype)

        def run_blocks(h: torch.Tensor) -> torch.Tensor:
            residency = self.block_residency
            for i, (block, audio_block) in enumerate(zip(wan.blocks, self.audio.audio_blocks, strict=True)):
                if residency is not None:
                    residency.enter(i)
                h = block_forward(
                    block, audio_block, h, context, temb_proj, rotary, audio_tokens, grid[0], ref_masks, sp
                )
                if residency is not None:
                    residency.leave(i)
            return h

        x = self.teacache.run(cond.branch, temb_proj, x, run_blocks) if self.teacache is not None else run_blocks(x)

        shift, scale = (wan.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (wan.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = wan.proj_out(x)
        if sp is not None:
            x = sp.gather(x)
        x = x.reshape(batch, *grid, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        out: torch.Tensor = x.flatten(6, 7).flatten(4, 5).flatten(2, 3).float()
        return out


def patch_count(frames: int, height: int, width: int, patch: tuple[int, int, int]) -> int:
    """Number of video tokens for a latent of this size."""
    return math.prod((frames // patch[0], height // patch[1], width // patch[2]))
