"""The Wan VAE encoder: video [B, 3, T, H, W] -> posterior parameters [B, 2*z, T', H/8, W/8].

Layout (parameter names as in the Wan2.1 checkpoint, under `encoder.`): `conv1`, then per
level `num_res_blocks` ResidualBlocks (+ AttentionBlock at the `attn_scales`) and a Resample
between levels in `downsamples`, a `middle` of ResidualBlock-AttentionBlock-ResidualBlock and a
`head` of norm-SiLU-conv. Time is causal: T = 1 + s*k frames -> 1 + k latent frames.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from engine.vae.blocks import AttentionBlock, ResidualBlock
from engine.vae.config import VAEConfig
from engine.vae.layers import CausalConv3d, FeatureCache, RMSNorm, name_cache_slots
from engine.vae.resample import Resample


class Encoder3d(nn.Module):
    """Causal 3-D encoder; `out_dim` channels out (2 * z_dim in the VAE: mean and log-variance)."""

    def __init__(self, config: VAEConfig, out_dim: int) -> None:
        super().__init__()
        dims = [config.dim * m for m in (1, *config.dim_mult)]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)

        layers: list[nn.Module] = []
        last_level = len(config.dim_mult) - 1
        for i, (in_dim, level_dim) in enumerate(itertools.pairwise(dims)):
            for _ in range(config.num_res_blocks):
                layers.append(ResidualBlock(in_dim, level_dim, config.dropout))
                if scale in config.attn_scales:
                    layers.append(AttentionBlock(level_dim))
                in_dim = level_dim
            if i != last_level:
                layers.append(
                    Resample(
                        level_dim, mode="downsample3d" if config.temporal_downsample[i] else "downsample2d"
                    )
                )
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)

        top = dims[-1]
        self.middle = nn.Sequential(
            ResidualBlock(top, top, config.dropout),
            AttentionBlock(top),
            ResidualBlock(top, top, config.dropout),
        )
        self.head = nn.Sequential(RMSNorm(top), nn.SiLU(), CausalConv3d(top, out_dim, 3, padding=1))
        self.cache_slots = name_cache_slots(self)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        # x: [B, 3, T, H, W] -> [B, out_dim, T', H / s, W / s]; `cache` carries the stream.
        x = self.conv1(x, cache)
        for layer in self.downsamples:
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        for layer in self.middle:
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        for layer in self.head:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x
