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
from torch import nn

from engine.vae.config import VAEConfig
from engine.vae.decoder import Decoder3d
from engine.vae.encoder import Encoder3d
from engine.vae.layers import CausalConv3d, FeatureCache


class WanVAE(nn.Module):
    """Causal video VAE with stride (temporal_stride, 8, 8) and `z_dim` latent channels."""

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

    def _stat(self, name: str, like: torch.Tensor) -> torch.Tensor:
        buf: torch.Tensor = getattr(self, name)
        return buf.to(device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)

    def normalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """VAE space -> diffusion space: (z - mean) / std, channel-major [B, z, T, h, w]."""
        return (z - self._stat("latent_mean", z)) * self._stat("latent_inv_std", z)

    def denormalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Diffusion space -> VAE space: z * std + mean, channel-major [B, z, T, h, w]."""
        return z / self._stat("latent_inv_std", z) + self._stat("latent_mean", z)

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

    def encode_latent(
        self,
        video: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        pass_frames: int | None = None,
    ) -> torch.Tensor:
        """Video -> diffusion-space latent [B, z, 1 + k, H / s, W / s] (the posterior mean,
        or a sample of the posterior with `sample=True`)."""
        mu, log_var = self.encode(video, pass_frames=pass_frames)
        z = self.sample_posterior(mu, log_var, generator) if sample else mu
        return self.normalize_latent(z)

    @staticmethod
    def sample_posterior(
        mu: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reparameterised sample mu + sigma * eps (log-variance clamped as in the reference)."""
        std = torch.exp(0.5 * log_var.clamp(-30.0, 20.0))
        eps = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
        return mu + std * eps

    # -- decoding -------------------------------------------------------------------------

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
        Returns [B, 3, n, 8h, 8w] with n = 1 + s*(t-1) at the stream start, else s*t.
        `frames_per_pass` splits the chunk into decoder passes of that many latent frames
        (1 = the reference's frame-by-frame loop; None = one pass); results agree to rounding.
        """
        if z.ndim != 5 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"latent must be [B, {self.config.z_dim}, t, h, w], got {tuple(z.shape)}")
        if frames_per_pass is not None and frames_per_pass <= 0:
            raise ValueError("frames_per_pass must be positive")
        if normalized:
            z = self.denormalize_latent(z)
        t = z.shape[2]
        step = t if frames_per_pass is None else frames_per_pass
        # conv2 (1x1x1) runs per pass, not on the whole chunk: a GEMM's rounding can depend on
        # the number of frames, and per-pass shapes make every split of a clip bit-identical.
        pieces = [self.decoder(self.conv2(z[:, :, i : i + step]), cache) for i in range(0, t, step)]
        out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
        return out.clamp(-1.0, 1.0) if clamp else out

    def decode(
        self,
        z: torch.Tensor,
        *,
        normalized: bool = True,
        clamp: bool = True,
        frames_per_pass: int | None = 1,
    ) -> torch.Tensor:
        """Decode a whole clip: [B, z, T, h, w] -> pixels [B, 3, 1 + s*(T-1), 8h, 8w].

        `normalized=True` takes diffusion-space latents (de-normalised first); `clamp` clips
        to [-1, 1] as the reference's `WanVAE.decode`. The default frame-by-frame loop is the
        reference's and keeps memory at one latent frame's activations.
        """
        return self.decode_chunk(z, {}, normalized=normalized, clamp=clamp, frames_per_pass=frames_per_pass)

    def forward(
        self, video: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction without clamp, mu, log_var), all in VAE space."""
        mu, log_var = self.encode(video)
        z = self.sample_posterior(mu, log_var, generator)
        recon = self.decode(z, normalized=False, clamp=False, frames_per_pass=None)
        return recon, mu, log_var
