"""The Wan2.1 video VAE: encoder, decoder and the 1x1x1 convs between them and the latent.

`WanVAE().state_dict()` has exactly the keys of the released `Wan2.1_VAE.pth` (`encoder.*`,
`conv1.*`, `conv2.*`, `decoder.*`), so that file loads with strict=True. The latent
normalisation (mean / std per channel) is kept in non-persistent buffers for the same reason.

Two latent spaces appear here:

* VAE space: what the encoder's `conv1` emits (mu, log_var) and what `conv2` consumes.
* diffusion space (normalised): ``(z_vae - mean) / std``, what the DiT generates.

As in the reference, the division by std is done as a multiplication by a float32 reciprocal
(and de-normalisation as a division by it), so that outputs match it to the last bit.
"""

from __future__ import annotations

import itertools

import torch

from engine.vae.base import LatentVideoVAE, channel_view
from engine.vae.config import VAEConfig
from engine.vae.decoder import Decoder3d
from engine.vae.encoder import Encoder3d
from engine.vae.layers import CausalConv3d, FeatureCache


class WanVAE(LatentVideoVAE):
    """Causal video VAE with stride (temporal_stride, 8, 8) and `z_dim` latent channels."""

    latent_mean: torch.Tensor
    latent_inv_std: torch.Tensor

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        z = self.config.z_dim
        self.encoder = Encoder3d(self.config, out_dim=2 * z)
        self.conv1 = CausalConv3d(2 * z, 2 * z, 1)
        self.conv2 = CausalConv3d(z, z, 1)
        self.decoder = Decoder3d(self.config)
        mean = torch.tensor(self.config.mean, dtype=torch.float32)
        inv_std = 1.0 / torch.tensor(self.config.std, dtype=torch.float32)
        self.register_buffer("latent_mean", mean, persistent=False)  # [z]
        self.register_buffer("latent_inv_std", inv_std, persistent=False)  # [z]

    # -- latent normalisation -------------------------------------------------------------

    def normalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """VAE space -> diffusion space: (z - mean) / std, channel-major [B, z, T, h, w]."""
        return (z - channel_view(self.latent_mean, z)) * channel_view(self.latent_inv_std, z)

    def denormalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Diffusion space -> VAE space: z * std + mean, channel-major [B, z, T, h, w]."""
        return z / channel_view(self.latent_inv_std, z) + channel_view(self.latent_mean, z)

    # -- encoding -------------------------------------------------------------------------

    def encode(
        self, video: torch.Tensor, *, pass_frames: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Video in [-1, 1] -> posterior (mu, log_var) in VAE space (not normalised).

        video: [B, 3, T, H, W] with T = 1 + temporal_stride * k and H, W multiples of
        spatial_stride; returns two [B, z, 1 + k, H / s, W / s] tensors. Frame 0 is coded alone.
        `pass_frames` bounds memory: frame 0 goes in one pass, then `pass_frames` frames
        (a multiple of temporal_stride) per pass, the causal cache carried between passes
        (the reference uses 4); None runs the clip in one pass. The result is the same up to float rounding.
        """
        cfg = self.config
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be [B, 3, T, H, W], got {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        cfg.latent_frames(t)  # validates 1 + stride * k
        if h % cfg.spatial_stride or w % cfg.spatial_stride:
            raise ValueError(f"height and width must be multiples of {cfg.spatial_stride}, got {h}x{w}")
        if pass_frames is not None and (pass_frames <= 0 or pass_frames % cfg.temporal_stride):
            raise ValueError(f"pass_frames must be a positive multiple of {cfg.temporal_stride}")
        cache: FeatureCache = {}
        if pass_frames is None:
            out = self.encoder(video, cache)
        else:
            bounds = [0, 1, *range(1 + pass_frames, t, pass_frames), t]
            pieces = [self.encoder(video[:, :, a:b], cache) for a, b in itertools.pairwise(bounds) if b > a]
            out = torch.cat(pieces, dim=2)
        mu, log_var = self.conv1(out).chunk(2, dim=1)
        return mu, log_var

    # -- decoding -------------------------------------------------------------------------

    def decode_pass(self, z: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """[B, z, t, h, w] (VAE space) -> [B, 3, n, 8h, 8w], n = 1 + s*(t-1) at the stream start,
        else s*t. conv2 (1x1x1) runs per pass, not on the whole chunk: a GEMM's rounding can
        depend on the number of frames, and per-pass shapes make every split bit-identical."""
        return self.decoder(self.conv2(z), cache)

    def decode(
        self,
        z: torch.Tensor,
        *,
        normalized: bool = True,
        clamp: bool = True,
        frames_per_pass: int | None = 1,
    ) -> torch.Tensor:
        """Decode a whole clip: [B, z, T, h, w] -> pixels [B, 3, 1 + s*(T-1), 8h, 8w].

        `clamp` clips to [-1, 1] as the reference's `WanVAE.decode`; the default frame-by-frame
        loop is the reference's and keeps memory at one latent frame's activations.
        """
        return super().decode(z, normalized=normalized, clamp=clamp, frames_per_pass=frames_per_pass)
