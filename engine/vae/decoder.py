"""The Wan VAE decoder: latents [B, z, T, h, w] -> pixels [B, 3, 1 + s*(T-1), 8h, 8w].

Layout (parameter names as in the Wan2.1 checkpoint, under `decoder.`): `conv1`, a `middle` of
ResidualBlock-AttentionBlock-ResidualBlock, per level `num_res_blocks + 1` ResidualBlocks
(+ AttentionBlock at the `attn_scales`) and an upsampling Resample between levels in
`upsamples`, and a `head` of norm-SiLU-conv to RGB. Every upsampling halves the channels, so
the first ResidualBlock of each later level takes half its predecessor's width.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from engine.vae.blocks import AttentionBlock, ResidualBlock
from engine.vae.config import VAEConfig
from engine.vae.layers import CausalConv3d, FeatureCache, RMSNorm, name_cache_slots
from engine.vae.resample import Resample


class Decoder3d(nn.Module):
    """Causal 3-D decoder, streamable: passes over consecutive latent frames share a cache."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        mults = config.dim_mult
        dims = [config.dim * m for m in (mults[-1], *reversed(mults))]
        scale = 1.0 / 2 ** (len(mults) - 2)
        self.conv1 = CausalConv3d(config.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(
            ResidualBlock(dims[0], dims[0], config.dropout),
            AttentionBlock(dims[0]),
            ResidualBlock(dims[0], dims[0], config.dropout),
        )

        layers: list[nn.Module] = []
        last_level = len(mults) - 1
        for i, (in_dim, level_dim) in enumerate(itertools.pairwise(dims)):
            if i > 0:
                in_dim //= 2  # the previous Resample halved the channels
            for _ in range(config.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, level_dim, config.dropout))
                if scale in config.attn_scales:
                    layers.append(AttentionBlock(level_dim))
                in_dim = level_dim
            if i != last_level:
                layers.append(
                    Resample(level_dim, mode="upsample3d" if config.temporal_upsample[i] else "upsample2d")
                )
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)

        out = dims[-1]
        self.head = nn.Sequential(RMSNorm(out), nn.SiLU(), CausalConv3d(out, 3, 3, padding=1))
        self.cache_slots = name_cache_slots(self)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        # x: [B, z, t, h, w] (after the VAE's conv2) -> [B, 3, T_pix, H, W]; `cache` carries the stream.
        x = self.conv1(x, cache)
        for layer in self.middle:
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        for layer in self.upsamples:
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        for layer in self.head:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x
