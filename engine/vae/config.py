"""Typed configuration of the Wan2.1 video VAE.

The fields mirror the keyword arguments of the public `WanVAE_` (with the reference's
`temperal_downsample` spelled correctly here), plus the per-channel latent statistics that
map between the VAE's own latent space and the diffusion model's normalised latent space:
``z_diffusion = (z_vae - mean) / std`` and back ``z_vae = z_diffusion * std + mean``.
The defaults are the released Wan2.1 VAE (width 96, stride 4x8x8, 16 latent channels).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WAN21_LATENT_MEAN: tuple[float, ...] = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENT_STD: tuple[float, ...] = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class VAEConfig:
    """Shapes of the causal 3-D VAE and its latent normalisation.

    `dim_mult` gives the channel multiplier of each resolution level (dim * mult); there is a
    2x spatial resampling between consecutive levels, and `temporal_downsample[i]` says whether
    the resampling after level i also halves (encoder) / doubles (decoder) time. Time is causal:
    the first frame is coded alone, every later group of `temporal_stride` frames becomes one
    latent frame.
    """

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    mean: tuple[float, ...] = WAN21_LATENT_MEAN
    std: tuple[float, ...] = WAN21_LATENT_STD

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store tuples so the config stays hashable.
        for name in ("dim_mult", "attn_scales", "temporal_downsample", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "temporal_downsample", tuple(bool(v) for v in self.temporal_downsample))
        object.__setattr__(self, "attn_scales", tuple(float(v) for v in self.attn_scales))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.dim <= 0 or self.z_dim <= 0 or self.num_res_blocks <= 0:
            raise ValueError("dim, z_dim and num_res_blocks must be positive")
        if len(self.dim_mult) < 2:
            raise ValueError("dim_mult needs at least two levels")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(
                f"temporal_downsample needs {len(self.dim_mult) - 1} entries (one per resampling), "
                f"got {len(self.temporal_downsample)}"
            )
        if any((self.dim * m) % 2 for m in self.dim_mult):
            raise ValueError("decoder upsampling halves channels: dim * dim_mult must be even")
        if len(self.mean) != self.z_dim or len(self.std) != self.z_dim:
            raise ValueError(f"mean and std need z_dim={self.z_dim} entries each")
        if any(s == 0.0 for s in self.std):
            raise ValueError("std entries must be non-zero")

    @property
    def spatial_stride(self) -> int:
        """Pixels per latent cell along height and width (8 for Wan2.1)."""
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_stride(self) -> int:
        """Pixel frames per latent frame after the first one (4 for Wan2.1)."""
        return 2 ** sum(self.temporal_downsample)

    @property
    def temporal_upsample(self) -> tuple[bool, ...]:
        """Decoder's time-doubling flags, in decoder order (the encoder's reversed)."""
        return tuple(reversed(self.temporal_downsample))

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames decoded from a clip of `latent_frames` latent frames (from the stream start)."""
        if latent_frames < 0:
            raise ValueError("latent_frames must be >= 0")
        if latent_frames == 0:
            return 0
        return 1 + self.temporal_stride * (latent_frames - 1)

    def latent_frames(self, pixel_frames: int) -> int:
        """Latent frames encoding a clip of `pixel_frames` frames (must be 1 + stride * k)."""
        if pixel_frames < 1 or (pixel_frames - 1) % self.temporal_stride:
            raise ValueError(f"a clip must have 1 + {self.temporal_stride} * k frames, got {pixel_frames}")
        return 1 + (pixel_frames - 1) // self.temporal_stride

    @classmethod
    def from_wan_kwargs(cls, kwargs: Mapping[str, Any], **overrides: Any) -> VAEConfig:
        """Build from `WanVAE_(**kwargs)`-style keyword arguments (reference spelling accepted).

        Unknown keys raise, so a config section from a newer reference is not silently misread.
        """
        known = {"dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales", "dropout", "mean", "std"}
        fields: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in ("temperal_downsample", "temporal_downsample"):
                fields["temporal_downsample"] = value
            elif key in known:
                fields[key] = value
            else:
                raise ValueError(f"unknown WanVAE_ argument {key!r}")
        fields.update(overrides)
        return cls(**fields)
