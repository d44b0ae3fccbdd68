"""What every Rollcast video VAE shares: posterior sampling, diffusion-space latents and
chunk-by-chunk decoding over a carried `FeatureCache`.

A subclass provides `encode` (video -> posterior in VAE space), `normalize_latent` /
`denormalize_latent` (VAE space <-> diffusion space) and `decode_pass` (one decoder pass over
some latent frames, continuing the stream in `cache`); `StreamingDecoder` and sessions use only
the methods defined here, so they run any VAE.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.vae.layers import FeatureCache


def channel_view(buf: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel vector [z] as [1, z, 1, 1, 1] on `like`'s device and dtype."""
    return buf.to(device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)


class LatentVideoVAE(nn.Module):
    config: Any  # has `z_dim`

    def encode(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video in [-1, 1] -> posterior (mu, log_var) in VAE space."""
        raise NotImplementedError

    def normalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def denormalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_pass(self, z: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """VAE-space latent frames [B, z, t, h, w] -> pixels, continuing the stream in `cache`."""
        raise NotImplementedError

    @staticmethod
    def sample_posterior(
        mu: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reparameterised sample mu + sigma * eps (log-variance clamped as in the reference)."""
        std = torch.exp(0.5 * log_var.clamp(-30.0, 20.0))
        eps = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
        return mu + std * eps

    def encode_latent(
        self,
        video: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Video -> diffusion-space latent [B, z, t, h, w] (the posterior mean, or a sample of
        the posterior with `sample=True`)."""
        mu, log_var = self.encode(video)
        z = self.sample_posterior(mu, log_var, generator) if sample else mu
        return self.normalize_latent(z)

    def decode_chunk(
        self,
        z: torch.Tensor,
        cache: FeatureCache,
        *,
        normalized: bool = True,
        clamp: bool = True,
        frames_per_pass: int | None = None,
    ) -> torch.Tensor:
        """Decode latent frames that continue the stream whose decoder state is `cache`.

        z: [B, z, t, h, w]; `cache` is updated in place (an empty dict starts a stream).
        `frames_per_pass` splits the chunk into decoder passes of that many latent frames
        (1 = frame by frame, bounded memory; None = one pass); results agree to rounding.
        """
        if z.ndim != 5 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"latent must be [B, {self.config.z_dim}, t, h, w], got {tuple(z.shape)}")
        if frames_per_pass is not None and frames_per_pass <= 0:
            raise ValueError("frames_per_pass must be positive")
        if normalized:
            z = self.denormalize_latent(z)
        t = z.shape[2]
        step = t if frames_per_pass is None else frames_per_pass
        pieces = [self.decode_pass(z[:, :, i : i + step], cache) for i in range(0, t, step)]
        out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
        return out.clamp(-1.0, 1.0) if clamp else out

    def decode(
        self,
        z: torch.Tensor,
        *,
        normalized: bool = True,
        clamp: bool = True,
        frames_per_pass: int | None = None,
    ) -> torch.Tensor:
        """Decode a whole clip as one stream (`normalized=True`: z is in diffusion space)."""
        return self.decode_chunk(z, {}, normalized=normalized, clamp=clamp, frames_per_pass=frames_per_pass)

    def forward(
        self, video: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction without clamp, mu, log_var), all in VAE space."""
        mu, log_var = self.encode(video)
        z = self.sample_posterior(mu, log_var, generator)
        return self.decode_pass(z, {}), mu, log_var
