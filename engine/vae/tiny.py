"""The light streaming video VAE of the `tiny` preset (128x128 RGB <-> 8 x t x 16 x 16 latent).

Why not the Wan VAE at a small width: its decoder runs 3-D convolutions at full resolution on
every pixel frame, ~2-3 s per chunk on two CPU cores. This one spends its compute where it is
cheap and still streams exactly:

* uniform temporal stride 4 ("time to depth"): latent frame i codes pixel frames 4i..4i+3 (no
  separate first frame), so `pixel_frames(n) = 4 n`;
* the encoder stacks each group of 4 frames in the channels (12 x 128 x 128), folds 2x2 pixels
  into channels and halves the resolution twice more with strided 2-D convolutions;
* the decoder works per latent frame at 16x16 (causal temporal blocks over the last 3 latent
  frames, then one convolution that gives each of the 4 pixel frames its own feature map), then
  per pixel frame with a small 2-D decoder (16x16 -> 32x32 -> 64x64, RGB as 2x2 sub-pixels), so
  no layer runs at 128x128 and only narrow ones run once per pixel frame (`TinyDecoder` says
  why per pixel frame);
* the temporal convolutions keep the last 2 latent frames of their input in the `FeatureCache`:
  decoding chunk by chunk equals decoding the whole clip (to rounding), exactly as the Wan
  decoder streams.

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
    """Shapes of the tiny VAE (levels listed coarse first: 1/8, 1/4, 1/2 of the resolution).

    encoder_widths / encoder_blocks: the encoder's channels and residual blocks per level; its
      finest level sees the 4 stacked frames of a group, so it is wide (it only runs offline).
    latent_width: channels of the decoder's per-latent-frame part (at 1/8).
    temporal_blocks: causal temporal residual layers there (3 latent frames x 3x3 pixels).
    decoder: "per_frame" (`TinyDecoder`, the shipped one) or "shared" (`SharedDecoder`: ~1.5x
      cheaper per training step, it stutters; the VAE stage trains the encoder with it, see there).
    widths / blocks: the per-pixel-frame decoder's channels and residual blocks per level; the
      spatial stride is 2 ** len(widths).
    """

    z_dim: int = 16
    encoder_widths: tuple[int, ...] = (128, 64, 64)
    encoder_blocks: tuple[int, ...] = (2, 1, 1)
    latent_width: int = 128
    temporal_blocks: int = 2
    widths: tuple[int, ...] = (64, 48, 32)
    blocks: tuple[int, ...] = (1, 1, 1)
    frames_per_latent: int = 4
    decoder: str = "per_frame"

    def __post_init__(self) -> None:
        if self.decoder not in ("per_frame", "shared"):
            raise ValueError(f"decoder must be 'per_frame' or 'shared', got {self.decoder!r}")
        for name in ("encoder_widths", "encoder_blocks", "widths", "blocks"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.widths) < 1 or not (
            len(self.blocks) == len(self.encoder_widths) == len(self.encoder_blocks) == len(self.widths)
        ):
            raise ValueError("widths, blocks, encoder_widths and encoder_blocks need one entry per level")
        if min(self.z_dim, self.frames_per_latent, self.latent_width, *self.widths) <= 0:
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


def tie_frame_groups(conv: nn.Conv2d, frames: int) -> None:
    """Give the `frames` output-channel groups of `conv` the first group's initial weights, so a
    decoder starts by drawing the 4 pixel frames of a latent frame alike (then learns how they
    differ). Independently initialised groups start with unrelated frames, and training spends
    its first thousand steps undoing the flicker (measured: training L1 0.18 vs 0.11 after 240 steps)."""
    with torch.no_grad():
        weight = conv.weight.unflatten(0, (frames, -1))
        weight[1:] = weight[0]
        if conv.bias is not None:
            bias = conv.bias.unflatten(0, (frames, -1))
            bias[1:] = bias[0]


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
    """x + causal conv over time (3 latent frames x 3x3 latent pixels) on [B, C, t, h, w]; streams.

    Zero-initialised, so the decoder starts frame-independent and learns what to take from the
    two previous latent frames: where things were, hence how they move inside the current one.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, padding=1)
        zero_out_channels(self.conv)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
        return x + self.conv(F.silu(x), cache)


class TinyEncoder(nn.Module):
    """Video [B, 3, 4t, H, W] -> (mu, log_var) [B, z, t, H/8, W/8]; groups of 4 frames coded alone."""

    def __init__(self, cfg: TinyVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        fine = list(reversed(cfg.encoder_widths))  # finest level first
        blocks = list(reversed(cfg.encoder_blocks))
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


def upsampling_stack(widths: list[int] | tuple[int, ...], blocks: tuple[int, ...]) -> nn.Sequential:
    """2-D residual blocks per level, then nearest 2x upsampling + conv to the next width."""
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers += [ResBlock2d(width) for _ in range(blocks[i])]
        if i + 1 < len(widths):
            layers += [
                nn.Upsample(scale_factor=2.0, mode="nearest"),
                nn.Conv2d(width, widths[i + 1], 3, padding=1),
            ]
    return nn.Sequential(*layers)


class LatentStem(nn.Module):
    """Latent [B, z, t, h, w] -> features [B*t, C, h, w]: input conv + causal temporal blocks
    (the only layers that look across latent frames; they stream through the cache)."""

    def __init__(self, z_dim: int, width: int, temporal_blocks: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(z_dim, width, 3, padding=1)
        self.temporal = nn.ModuleList(TemporalBlock(width) for _ in range(temporal_blocks))

    def forward(self, z: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
        x = images_to_frames(self.conv_in(frames_to_images(z)), z.shape[0])  # [B, C, t, h, w]
        for block in self.temporal:
            x = block(x, cache)
        return frames_to_images(x)


def frames_to_video(rgb: torch.Tensor, batch: int) -> torch.Tensor:
    """[B*t*s, 3, H, W] (pixel frames in order) -> [B, 3, t*s, H, W]."""
    height, width = rgb.shape[-2:]
    return rgb.reshape(batch, -1, 3, height, width).transpose(1, 2)


class TinyDecoder(nn.Module):
    """Latent [B, z, t, h, w] (VAE space) -> pixels [B, 3, 4t, 8h, 8w]; streams with a cache.

    Two parts. Per latent frame, at h x w: an input conv, causal temporal blocks over the last 3
    latent frames, a residual block and a "time to frames" conv that gives each of the latent
    frame's 4 pixel frames its own feature map. Per pixel frame: a small 2-D decoder (residual
    blocks at 1/8, 1/4 and 1/2 resolution, nearest upsampling, RGB as 2x2 sub-pixels).

    Why per pixel frame: decoders that drew a latent frame's 4 pixel frames from one shared
    feature map (as channel groups of one output conv, or as a base image plus corrections)
    settled on drawing a moving object at its mean position in all 4 frames -- video that stood
    still and jumped every 4th frame. Each frame's own pass makes "where the object is in this
    frame" an explicit feature, and the temporal blocks supply the motion it follows from.
    """

    def __init__(self, cfg: TinyVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.stem = LatentStem(cfg.z_dim, cfg.latent_width, cfg.temporal_blocks)
        self.latent_block = ResBlock2d(cfg.latent_width)
        self.to_frames = nn.Conv2d(cfg.latent_width, cfg.frames_per_latent * w[0], 3, padding=1)
        tie_frame_groups(self.to_frames, cfg.frames_per_latent)
        self.body = upsampling_stack(w, cfg.blocks)
        self.conv_out = nn.Conv2d(w[-1], 3 * 4, 3, padding=1)  # RGB as 2x2 sub-pixels
        self.cache_slots = name_cache_slots(self)
        # Layout of the per-pixel-frame activations, the decoder's bulk: channels-last (NHWC)
        # lets the CPU's convolutions run 1.4-1.7x faster than the default NCHW, with the same
        # values to float rounding (`bench/decoder_layout.py`, test_decoder_layouts_agree).
        self.memory_format = torch.channels_last

    def forward(self, z: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        s = self.cfg.frames_per_latent
        y = self.to_frames(F.silu(self.latent_block(self.stem(z, cache))))  # [B*t, s*W0, h, w]
        y = y.unflatten(1, (s, self.cfg.widths[0])).flatten(0, 1)  # [B*t*s, W0, h, w] (frame order)
        y = y.contiguous(memory_format=self.memory_format)
        rgb = F.pixel_shuffle(self.conv_out(F.silu(self.body(y))), 2)  # [B*t*s, 3, H, W]
        return frames_to_video(rgb, z.shape[0])


class SharedDecoder(nn.Module):
    """The cheap decoder the encoder is trained with: like `TinyDecoder`, but the 4 pixel frames
    of a latent frame come out of one shared per-latent-frame 2-D decoder (channels halving from
    `latent_width` per level, `encoder_blocks` residual blocks) as channel groups of its output
    convolution. ~1.5x cheaper per training step (0.85 s vs 1.3 s, batch 4 x 8 frames, 2 cores);
    it draws a moving object at nearly one position per latent frame (stutter), which is why the
    shipped decoder is `TinyDecoder`, trained afterwards on the frozen encoder."""

    def __init__(self, cfg: TinyVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = [cfg.latent_width // 2**i for i in range(len(cfg.widths))]
        self.stem = LatentStem(cfg.z_dim, widths[0], cfg.temporal_blocks)
        self.body = upsampling_stack(widths, cfg.encoder_blocks)
        self.conv_out = nn.Conv2d(widths[-1], cfg.frames_per_latent * 3 * 4, 3, padding=1)
        tie_frame_groups(self.conv_out, cfg.frames_per_latent)
        self.cache_slots = name_cache_slots(self)

    def forward(self, z: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        s = self.cfg.frames_per_latent
        y = self.conv_out(F.silu(self.body(self.stem(z, cache))))  # [B*t, s*12, H/2, W/2]
        rgb = F.pixel_shuffle(y.unflatten(1, (s, 12)).flatten(0, 1), 2)  # [B*t*s, 3, H, W]
        return frames_to_video(rgb, z.shape[0])


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
        self.decoder: TinyDecoder | SharedDecoder = (
            TinyDecoder(self.config) if self.config.decoder == "per_frame" else SharedDecoder(self.config)
        )
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
