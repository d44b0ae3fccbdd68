"""One transformer block of the causal Wan DiT and the output head.

Modulation is per latent frame: the timestep embedding e0 [B, F, 6, dim] gives (shift, scale,
gate) for self-attention and for the FFN of every token of that frame. Cross-attention has no
gate (its input is norm3, an affine LayerNorm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.config import DiTConfig
from engine.model.attention import AttentionContext, CrossAttention, SelfAttention
from engine.model.layers import LayerNorm
from engine.sparse import VSAConfig


def _per_frame(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, F*S, C] -> [B, F, S, C]."""
    return x.unflatten(1, (frames, x.shape[1] // frames))


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig, sparse: VSAConfig | None = None) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps, sparse)
        self.norm3: nn.Module = (
            LayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        )
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm2 = LayerNorm(dim, cfg.eps)
        self.ffn = nn.Sequential(
            nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim)
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / math.sqrt(dim))

    def forward(
        self,
        x: torch.Tensor,  # [B, L, dim]
        e0: torch.Tensor,  # [B, F, 6, dim]
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        layer: int,
        ctx: AttentionContext,
    ) -> torch.Tensor:
        frames = e0.shape[1]
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation.unsqueeze(1) + e0).chunk(6, dim=2)
        h = (_per_frame(self.norm1(x), frames) * (1 + scale1) + shift1).flatten(1, 2)
        y = self.self_attn(h, layer, ctx)
        x = x + (_per_frame(y, frames) * gate1).flatten(1, 2)
        x = x + self.cross_attn(self.norm3(x), cross_kv)
        h = (_per_frame(self.norm2(x), frames) * (1 + scale2) + shift2).flatten(1, 2)
        y = self.ffn(h)
        return x + (_per_frame(y, frames) * gate2).flatten(1, 2)


class Head(nn.Module):
    """Final modulated LayerNorm + linear to patch values (uses e, not e0, for modulation)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.norm = LayerNorm(cfg.dim, cfg.eps)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / math.sqrt(cfg.dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, L, dim], e [B, F, 1, dim] -> [B, F, S, prod(patch) * out_dim]."""
        shift, scale = (self.modulation.unsqueeze(1) + e).chunk(2, dim=2)
        return self.head(_per_frame(self.norm(x), e.shape[1]) * (1 + scale) + shift)
