"""Label rotary position embedding (L-RoPE): binds each voice to one person in the picture.

Video tokens get a 1-D position from where they look in the reference frame: tokens that
attend mostly to person 1's region get positions in [0, 4], person 2's in [20, 24], the
background 12. Audio tokens of person 1 sit at 2 and person 2 at 22, so attention between
a person's video tokens and the other person's audio is damped by the rotation.
"""

from __future__ import annotations

import torch

PERSON_RANGES: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 4.0), (20.0, 24.0))
BACKGROUND_POSITION = 12.0  # half of the class range (24)
MAX_PERSONS = 2
ROPE_BASE = 10000.0


def rope_1d(x: torch.Tensor, positions: torch.Tensor, base: float = ROPE_BASE) -> torch.Tensor:
    """Rotate interleaved channel pairs of x [..., S, D] by angles positions[S] * base^(-2i/D), in fp32."""
    dim = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=x.device)[: dim // 2].float() / dim))
    angles = positions.to(device=x.device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    cos, sin = angles.cos(), angles.sin()
    pairs = torch.unflatten(x.float(), -1, (dim // 2, 2))
    even, odd = pairs.unbind(-1)
    rotated = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)
    return rotated.type_as(x)


def audio_key_positions(tokens_per_frame: int, frames: int, device: torch.device | None = None) -> torch.Tensor:
    """Positions of the audio keys [frames * tokens]: first half person 1 (2), second half person 2 (22)."""
    per_frame = torch.empty(tokens_per_frame, device=device)
    half = tokens_per_frame // 2
    per_frame[:half] = sum(PERSON_RANGES[0]) / 2
    per_frame[half:] = sum(PERSON_RANGES[1]) / 2
    return per_frame.repeat(frames)


def reference_attention_sums(
    query: torch.Tensor, key: torch.Tensor, ref_tokens: int, class_masks: torch.Tensor, head_chunk: int = 1
) -> torch.Tensor:
    """Sum over the given heads of each token's attention to each class region of the reference frame.

    query, key: [1, S, H, D] self-attention projections after RoPE (all S tokens, any subset
    of the heads); class_masks: [C, ref_tokens] (person 1, person 2, background). Returns
    [S, C] float32: per head, softmax attention over the reference (first latent) frame's
    tokens, averaged inside each class mask; summed over the heads. Heads are processed in
    chunks so the S x ref_tokens matrix never exists for all heads at once.
    """
    heads, head_dim = query.shape[2], query.shape[3]
    q = (query[0] * head_dim**-0.5).transpose(0, 1)  # H, S, D
    k = key[0, :ref_tokens].transpose(0, 1)  # H, R, D
    masks = class_masks.to(torch.float32)
    weights = (masks / masks.sum(-1, keepdim=True).clamp_min(1.0)).t()  # R, C: mean inside each mask (0 if empty)
    total = torch.zeros(q.shape[1], masks.shape[0], device=q.device, dtype=torch.float32)
    for start in range(0, heads, head_chunk):
        scores = torch.matmul(q[start : start + head_chunk], k[start : start + head_chunk].transpose(-1, -2))
        probs = scores.float().softmax(-1)
        total += torch.matmul(probs, weights).sum(0)
    return total


def reference_attention_map(
    query: torch.Tensor, key: torch.Tensor, ref_tokens: int, class_masks: torch.Tensor, head_chunk: int = 1
) -> torch.Tensor:
    """[C, S]: reference_attention_sums over all heads of query/key, averaged over the heads."""
    total = reference_attention_sums(query, key, ref_tokens, class_masks, head_chunk)
    return (total / query.shape[2]).t().to(query.dtype)


def video_token_positions(attention_map: torch.Tensor) -> torch.Tensor:
    """L-RoPE positions [S] of the video tokens from the [3, S] reference attention map."""

    def rescale(row: torch.Tensor, target: tuple[float, float]) -> torch.Tensor:
        low, high = row.min(), row.max()
        return (row - low) / (high - low + 1e-8) * (target[1] - target[0]) + target[0]

    person1 = rescale(attention_map[0], PERSON_RANGES[0])
    person2 = rescale(attention_map[1], PERSON_RANGES[1])
    background = torch.full_like(person1, BACKGROUND_POSITION)
    choices = torch.stack([person1, person2, background], dim=1)  # S, 3
    winner = attention_map.argmax(dim=0)
    return choices.gather(1, winner[:, None]).squeeze(1)
