"""The light streaming video VAE of the `tiny` preset (128x128 RGB <-> 16 x 16 x 16 x 16 latent).

Why not the Wan VAE at a small width: its decoder runs 3-D convolutions at full resolution on
every pixel frame, ~2-3 s per chunk on two CPU cores. This one spends its compute where it is
cheap and still streams exactly:

* uniform temporal stride 4 ("time to depth"): latent frame i codes pixel frames 4i..4i+3 (no
  separate first frame), so `pixel_frames(n) = 4 n`;
* the encoder stacks each group of 4 frames in the channels (12 x 128 x 128), folds 2x2 pixels
  into channels and halves the resolution twice more with strided 2-D convolutions;
* the decoder runs 2-D residual blocks per latent frame at 16x16, 32x32 and 64x64 and emits the
  4 frames x RGB x 2x2 sub-pixels of a latent frame from one convolution at 64x64 (a
  depth-to-time-and-space "pixel shuffle"), so no layer ever runs at 128x128 or once per pixel
  frame;
* temporal coherence comes from causal temporal convolutions over latent frames at 16x16 (kernel
  3 in time, 1x1 in space), which keep the last 2 latent frames of their input in the
  `FeatureCache`: decoding chunk by chunk equals decoding the whole clip (to rounding), exactly
  as the Wan decoder streams.

The encoder codes every group of 4 frames independently (it is only used offline: training and
latent datasets). Latent normalisation (`latent_mean`, `latent_std`, per channel) is measured on
data after training and stored as persistent buffers, so a weights file is self-contained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.vae.base import LatentVideoVAE, channel_view
from engine.vae.layers import CausalConv3d, FeatureCache, frames_to_images, images_to_frames, name_cache_slots


@dataclass(frozen=True)
class TinyVAEConfig:
    """Shapes of the tiny VAE.

    widths: decoder feature channels at 1/8, 1/4, 1/2 of the resolution (coarse first); the
      spatial stride is 2 ** len(widths).
    encoder_widths: the encoder's channels at the same levels; its finest level sees the 4
      stacked frames of a group, so it is wider than the decoder's (it only runs offline).
    blocks: 2-D residual blocks per level (decoder; the encoder mirrors them).
    temporal_blocks: causal temporal residual layers at the coarsest level of the decoder.
    """

    z_dim: int = 16
    widths: tuple[int, ...] = (128, 64, 32)
    encoder_widths: tuple[int, ...] = (128, 64, 64)
    blocks: tuple[int, ...] = (2, 1, 1)
    temporal_blocks: int = 2
    frames_per_latent: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "encoder_widths", tuple(int(w) for w in self.encoder_widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.widths) < 1 or not len(self.blocks) == len(self.encoder_widths) == len(self.widths):
            raise ValueError("widths, encoder_widths and blocks need one entry per level")
        if self.z_dim <= 0 or self.frames_per_latent <= 0 or min(self.widths) <= 0:
            raise ValueError("z_dim, frames_per_latent and widths must be positive")

    @property
    def spatial_stride(self) -> int:
        return 2 ** len(self.widths)

    @property
    def temporal_stride(self) -> int:
        return self.frames_per_latent

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames decoded from `latent_frames` latent frames (uniform: 4 each)."""
        if latent_frames < 0:
            raise ValueError("latent_frames must be >= 0")
        return self.frames_per_latent * latent_frames

    def latent_frames(self, pixel_frames: int) -> int:
        if pixel_frames < 1 or pixel_frames % self.frames_per_latent:
            raise ValueError(
                f"a clip must have a multiple of {self.frames_per_latent} frames, got {pixel_frames}"
            )
        return pixel_frames // self.frames_per_latent


def zero_out_channels(conv: nn.Conv2d | nn.Conv3d, start: int = 0) -> None:
    """Zero a convolution's weights and bias for output channels `start:` (a residual branch
    that starts as the identity)."""
    with torch.no_grad():
        conv.weight[start:].zero_()
        if conv.bias is not None:
            conv.bias[start:].zero_()


class ResBlock2d(nn.Module):
    """x + conv(silu(conv(silu(x)))) on images [N, C, H, W].

    No normalisation layer: a per-image norm removes each feature group's spatial mean, which is
    exactly where a flat background colour lives, and it costs time on the CPU. The second conv
    starts at zero, so every block starts as the identity and the un-normalised stack trains
    stably.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        zero_out_channels(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class TemporalBlock(nn.Module):
    """x + causal conv over time (3 latent frames, 1x1 in space) on [B, C, t, h, w]; streams.

    Zero-initialised, so the decoder starts frame-independent and learns what to take from the
    two previous latent frames.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        zero_out_channels(self.conv)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
        return x + self.conv(F.silu(x), cache)


class TinyEncoder(nn.Module):
    """Video [B, 3, 4t, H, W] -> (mu, log_var) [B, z, t, H/8, W/8]; groups of 4 frames coded alone."""

    def __init__(self, cfg: TinyVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fine = list(reversed(cfg.encoder_widths))  # finest level first
        blocks = list(reversed(cfg.blocks))
        self.conv_in = nn.Conv2d(3 * cfg.frames_per_latent * 4, fine[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, width in enumerate(fine):
            layers += [ResBlock2d(width) for _ in range(blocks[i])]
            if i + 1 < len(fine):
                layers.append(nn.Conv2d(width, fine[i + 1], 3, stride=2, padding=1))
        self.body = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(fine[-1], 2 * cfg.z_dim, 3, padding=1)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, frames, h, w = video.shape
        s = self.cfg.frames_per_latent
        t = frames // s
        x = video.reshape(b, c, t, s, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b * t, s * c, h, w)
        x = F.pixel_unshuffle(x, 2)  # [B*t, 4*s*3, H/2, W/2]
        x = self.body(self.conv_in(x))
        x = self.conv_out(F.silu(x))  # [B*t, 2z, h, w]
        mu, log_var = images_to_frames(x, b).chunk(2, dim=1)
        return mu, log_var


class TinyDecoder(nn.Module):
    """Latent [B, z, t, h, w] (VAE space) -> pixels [B, 3, 4t, 8h, 8w]; streams with a cache.

    The 4 pixel frames of a latent frame come out of one convolution at half resolution as a
    *base image*, a *flow field* (pixels per frame) and per-frame residuals: frame k is the base
    warped by (k - 1.5) * flow plus its residual. Motion inside a latent frame is then one smooth
    2-channel field instead of 4 separately drawn positions. The aim: keep the decoder off the
    shortcut of drawing a moving object at its mean position in all 4 frames (a video that
    stands still and jumps every 4th frame), so that the encoder learns to code the motion. The
    shipped weights have not got there: their flow and residual outputs stay near zero.
    """

    def __init__(self, cfg: TinyVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        s = cfg.frames_per_latent
        self.conv_in = nn.Conv2d(cfg.z_dim, w[0], 3, padding=1)
        self.temporal = nn.ModuleList(TemporalBlock(w[0]) for _ in range(cfg.temporal_blocks))
        layers: list[nn.Module] = []
        for i, width in enumerate(w):
            layers += [ResBlock2d(width) for _ in range(cfg.blocks[i])]
            if i + 1 < len(w):
                layers += [
                    nn.Upsample(scale_factor=2.0, mode="nearest"),
                    nn.Conv2d(width, w[i + 1], 3, padding=1),
                ]
        self.body = nn.Sequential(*layers)
        # base RGB and per-frame residual RGB as 2x2 sub-pixels, then the 2-channel flow
        self.conv_out = nn.Conv2d(w[-1], 3 * 4 + s * 3 * 4 + 2, 3, padding=1)
        zero_out_channels(self.conv_out, start=12)  # residuals and flow start at zero: frames = base
        self.cache_slots = name_cache_slots(self)

    def forward(self, z: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        b, t = z.shape[0], z.shape[2]
        s = self.cfg.frames_per_latent
        x = images_to_frames(self.conv_in(frames_to_images(z)), b)  # [B, C0, t, h, w]
        for block in self.temporal:
            x = block(x, cache)
        y = self.conv_out(F.silu(self.body(frames_to_images(x))))  # [B*t, 12 + 12s + 2, H/2, W/2]
        base = F.pixel_shuffle(y[:, :12], 2)  # [N, 3, H, W]
        residual = F.pixel_shuffle(y[:, 12 : 12 + 12 * s], 2)  # [N, 3s, H, W]
        flow = F.interpolate(
            y[:, -2:], scale_factor=2.0, mode="bilinear", align_corners=False
        )  # [N, 2, H, W]
        frames = warp_frames(base, flow, s) + residual.unflatten(1, (s, 3)).flatten(0, 1)  # [N*s, 3, H, W]
        height, width = frames.shape[-2:]
        frames = frames.reshape(b, t, s, 3, height, width).permute(0, 3, 1, 2, 4, 5)
        return frames.reshape(b, 3, t * s, height, width)


def warp_frames(base: torch.Tensor, flow: torch.Tensor, frames: int) -> torch.Tensor:
    """base [N, 3, H, W], flow [N, 2, H, W] (x, y in pixels per frame) -> [N*frames, 3, H, W]:
    frame k samples the base at p - (k - (frames-1)/2) * flow(p) (bilinear, border padding)."""
    _n, _, height, width = base.shape
    ys = (torch.arange(height, dtype=base.dtype, device=base.device) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, dtype=base.dtype, device=base.device) + 0.5) * (2.0 / width) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2] (x, y)
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=base.dtype, device=base.device)
    offsets = torch.arange(frames, dtype=base.dtype, device=base.device) - (frames - 1) / 2.0  # [s]
    step = flow.permute(0, 2, 3, 1) * scale  # [N, H, W, 2] normalised units per frame
    grids = grid - offsets.view(1, frames, 1, 1, 1) * step.unsqueeze(1)  # [N, s, H, W, 2]
    sampled = F.grid_sample(
        base.repeat_interleave(frames, dim=0),
        grids.flatten(0, 1),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return sampled  # [N*s, 3, H, W]


class TinyVAE(LatentVideoVAE):
    """Encoder + streaming decoder + per-channel latent normalisation (see module docstring).

    Streaming decode, posterior sampling and `encode_latent` come from `LatentVideoVAE`, as for
    `WanVAE`, so `StreamingDecoder` and sessions use either.
    """

    latent_mean: torch.Tensor
    latent_std: torch.Tensor

    def __init__(self, config: TinyVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or TinyVAEConfig()
        self.encoder = TinyEncoder(self.config)
        self.decoder = TinyDecoder(self.config)
        z = self.config.z_dim
        self.register_buffer("latent_mean", torch.zeros(z))  # [z], measured after training
        self.register_buffer("latent_std", torch.ones(z))  # [z]

    # -- latent normalisation -------------------------------------------------------------

    def normalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """VAE space -> diffusion space, channel-major [B, z, t, h, w]."""
        return (z - channel_view(self.latent_mean, z)) / channel_view(self.latent_std, z)

    def denormalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        return z * channel_view(self.latent_std, z) + channel_view(self.latent_mean, z)

    # -- encoding -------------------------------------------------------------------------

    def encode(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video [B, 3, 4t, H, W] in [-1, 1] -> posterior (mu, log_var) in VAE space."""
        cfg = self.config
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be [B, 3, T, H, W], got {tuple(video.shape)}")
        cfg.latent_frames(video.shape[2])
        if video.shape[3] % cfg.spatial_stride or video.shape[4] % cfg.spatial_stride:
            raise ValueError(f"height and width must be multiples of {cfg.spatial_stride}")
        return self.encoder(video)

    # -- decoding -------------------------------------------------------------------------

    def decode_pass(self, z: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """[B, z, t, h, w] (VAE space) -> [B, 3, 4t, 8h, 8w]."""
        return self.decoder(z, cache)
