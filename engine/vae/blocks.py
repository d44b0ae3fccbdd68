"""Residual and attention blocks of the Wan VAE.

Both keep the Wan2.1 checkpoint's parameter names: a ResidualBlock's `residual` is indexed
0 norm, 1 SiLU, 2 conv, 3 norm, 4 SiLU, 5 dropout, 6 conv (only 0, 2, 3, 6 hold weights), and
`shortcut` is a 1x1x1 conv when the width changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.vae.layers import CausalConv3d, FeatureCache, RMSNorm, frames_to_images, images_to_frames


class ResidualBlock(nn.Module):
    """x + F(x) with F = norm-SiLU-conv3-norm-SiLU-dropout-conv3 (causal, streaming)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut: nn.Module = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        # x: [B, C_in, T, H, W] -> [B, C_out, T, H, W]
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame separately (no time mixing)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)  # starts as identity, as in the reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, T, H, W]
        identity = x
        b, c, _, h, w = x.shape
        y = self.norm(frames_to_images(x))  # [N, C, H, W], N = B*T
        n = y.shape[0]
        qkv = self.to_qkv(y).reshape(n, 1, c * 3, h * w).permute(0, 1, 3, 2).contiguous()
        q, k, v = qkv.chunk(3, dim=-1)  # each [N, 1, HW, C]
        y = F.scaled_dot_product_attention(q, k, v)  # [N, 1, HW, C]
        y = y.squeeze(1).permute(0, 2, 1).reshape(n, c, h, w)
        y = self.proj(y)
        return images_to_frames(y, b) + identity
