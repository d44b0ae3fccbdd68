"""Resolution changes between VAE levels: 2x spatial, optionally 2x temporal.

Temporal rules (causal, first frame coded alone), matching the public Wan2.1 VAE:

* ``downsample3d`` (encoder): after the spatial stride-2 conv, a 3-tap temporal conv with
  stride 2 and no padding. Output frame 0 is input frame 0 unchanged; output frame j >= 1 is the
  conv over input frames (2j-2, 2j-1, 2j). So 1 + 2k frames -> 1 + k. The streaming state is
  the last input frame (the left tap of the next window).
* ``upsample3d`` (decoder): before the spatial upsampling, a 3-tap causal temporal conv with
  2C output channels, read as two frames per input frame (channels [0, C) then [C, 2C)).
  Frame 0 of the stream is *not* doubled and is *not* part of the conv's history (the
  reference's 'Rep' marker): frames 1, 2, ... form a causal sequence with zero history.
  So 1 + k frames -> 1 + 2k. The streaming state is the time conv's own slot; an empty slot
  (0 frames) means "frame 0 seen, no history yet".
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from engine.vae.layers import (
    CausalConv3d,
    FeatureCache,
    NearestUpsample2x,
    frames_to_images,
    images_to_frames,
)

ResampleMode = Literal["upsample2d", "upsample3d", "downsample2d", "downsample3d"]


class Resample(nn.Module):
    """2x spatial up/down sampling, with 2x temporal up/down sampling for the *3d modes.

    Parameter names follow the Wan2.1 checkpoint: `resample.1` (the 2-D conv, index 0 being
    the parameter-free upsample / pad) and `time_conv`.
    """

    def __init__(self, dim: int, mode: ResampleMode) -> None:
        super().__init__()
        if mode not in ("upsample2d", "upsample3d", "downsample2d", "downsample3d"):
            raise ValueError(f"unknown resample mode {mode!r}")
        self.dim = dim
        self.mode = mode
        self.cache_key = ""
        self.time_conv: CausalConv3d | None = None
        if mode.startswith("upsample"):
            # Upsampling halves the channels (the next level's ResidualBlocks take dim // 2).
            self.resample = nn.Sequential(NearestUpsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        else:
            # Pad right/bottom by one so that a stride-2 3x3 conv maps H -> H / 2.
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    @property
    def needs_cache(self) -> bool:
        """Only downsample3d keeps a slot of its own (upsample3d's lives in its time_conv)."""
        return self.mode == "downsample3d"

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        # x: [B, C, T, H, W]
        if self.mode == "upsample3d":
            x = self._upsample_time(x, cache)
        b = x.shape[0]
        x = images_to_frames(self.resample(frames_to_images(x)), b)
        if self.mode == "downsample3d":
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        assert self.time_conv is not None
        key = self.time_conv.cache_key
        first: torch.Tensor | None = None
        if key not in cache:
            # Stream start: frame 0 passes through alone and is kept out of the history.
            first, x = x[:, :, :1], x[:, :, 1:]
            cache[key] = x[:, :, :0].clone()  # empty history: [B, C, 0, H, W]
        if x.shape[2] == 0:
            assert first is not None
            return first
        b, c, t, h, w = x.shape
        y = self.time_conv(x, cache)  # [B, 2C, t, H, W]
        # Channel block s in {0, 1} is output frame 2i + s.
        y = y.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
        return y if first is None else torch.cat([first, y], dim=2)

    def _downsample_time(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        assert self.time_conv is not None
        past = cache.get(self.cache_key)
        first: torch.Tensor | None = None
        if past is None:
            if x.shape[2] % 2 != 1:
                raise ValueError(
                    f"downsample3d: the first pass needs an odd number of frames, got {x.shape[2]}"
                )
            first, seq = x[:, :, :1], x
        else:
            if x.shape[2] % 2 != 0:
                raise ValueError(
                    f"downsample3d: passes after the first need an even number of frames, got {x.shape[2]}"
                )
            seq = torch.cat([past.to(device=x.device, dtype=x.dtype), x], dim=2)
        cache[self.cache_key] = seq[:, :, -1:].clone()
        if seq.shape[2] < 3:
            assert first is not None
            return first
        y = self.time_conv(seq)  # [B, C, (T_seq - 1) / 2, H, W]
        return y if first is None else torch.cat([first, y], dim=2)
