"""Elementary layers of the Wan VAE: the causal 3-D convolution with its streaming cache,
the channel RMS norm and the frame <-> image reshapes.

Streaming model. A causal video network can decode a stream piece by piece if every temporal
convolution remembers the last few frames of its *input*. Each such layer owns one slot (named
by its module path, `cache_key`) in a `FeatureCache`, a plain ``dict[str, Tensor]`` that the
caller threads through a pass and keeps between passes. An absent slot means "stream start":
the history is zeros. Slots hold at most `k_t - 1` frames (2 for the 3-tap Wan convs, the
reference's CACHE_T), so memory stays bounded however long the stream is. Layers only ever
*replace* slot tensors with fresh copies, never write into them, so a shallow copy of the dict
is a consistent snapshot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FeatureCache = dict[str, torch.Tensor]


def _use_onednn(x: torch.Tensor) -> bool:
    """Route a CPU float32 conv3d to oneDNN explicitly.

    PyTorch's dispatcher sends batch-1 conv3d with few channels x frames x rows (N*C*T*H <=
    20480, a threshold tuned for 2-D) to its im2col `slow_conv3d`, which is 3-5x slower than
    oneDNN for the VAE's shapes (e.g. [1, 16, 6, 130, 130] x 16->16: 430 ms vs 100 ms on 2
    threads). The result is the same convolution, to float rounding.
    """
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not x.is_mkldnn
        and torch.backends.mkldnn.is_available()
        and bool(torch.backends.mkldnn.enabled)
    )


class CausalConv3d(nn.Conv3d):
    """Conv3d that pads time only on the past side (2 * padding_t frames) and can stream.

    Spatial padding is symmetric as usual. With a `cache`, the zero past is replaced by the
    frames this layer saw at the end of the previous pass, so running a clip in several passes
    gives the same result as running it at once.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        pt, ph, pw = (int(v) for v in self.padding)
        self.time_pad = 2 * pt  # frames of history the layer needs
        # F.pad order: (w_left, w_right, h_top, h_bottom, t_front, t_back)
        self.spatial_pad = (pw, pw, ph, ph)
        self.padding = (0, 0, 0)
        self.cache_key = ""  # set by `name_cache_slots` once the model is assembled

    @property
    def needs_cache(self) -> bool:
        """Only convs with a temporal extent keep history (1-tap ones are per-frame)."""
        return self.time_pad > 0

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        # x: [B, C, T, H, W]
        front = self.time_pad
        if front and cache is not None:
            if not self.cache_key:
                raise RuntimeError("CausalConv3d used with a cache before name_cache_slots() ran")
            past = cache.get(self.cache_key)
            if past is not None:
                x = torch.cat([past.to(device=x.device, dtype=x.dtype), x], dim=2)
                front -= past.shape[2]
            # Keep the last `time_pad` input frames (fewer at the stream start). The copy
            # detaches the slot from the big activation so it can be freed; it is contiguous
            # (oneDNN outputs can be channels-last), as it is after a snapshot's round trip
            # through bytes, so a resumed stream takes the same kernels and continues bit for bit.
            cache[self.cache_key] = x[:, :, -self.time_pad :].clone(memory_format=torch.contiguous_format)
        x = F.pad(x, (*self.spatial_pad, front, 0))
        if _use_onednn(x):
            return torch.mkldnn_convolution(
                x, self.weight, self.bias, (0, 0, 0), self.stride, self.dilation, self.groups
            )
        return super().forward(x)


class RMSNorm(nn.Module):
    """Normalise each position's channel vector to unit RMS, then scale per channel.

    Equals the reference `RMS_norm`: F.normalize over channels times sqrt(C) times gamma.
    `images=True` is for 4-D [N, C, H, W] inputs (gamma [C, 1, 1]), else 5-D (gamma [C, 1, 1, 1]).
    """

    def __init__(self, dim: int, images: bool = False) -> None:
        super().__init__()
        self.scale = dim**0.5
        shape = (dim, 1, 1) if images else (dim, 1, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class NearestUpsample2x(nn.Module):
    """2x nearest-neighbour spatial upsampling on [N, C, H, W] (computed in float32 for bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=(2.0, 2.0), mode="nearest").type_as(x)


def frames_to_images(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B*T, C, H, W] (batch-major, then time)."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def images_to_frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """[B*T, C, H, W] -> [B, C, T, H, W]."""
    n, c, h, w = x.shape
    return x.reshape(batch, n // batch, c, h, w).permute(0, 2, 1, 3, 4)


def name_cache_slots(root: nn.Module) -> list[str]:
    """Give every streaming layer under `root` its module path as cache key; return the keys.

    Streaming layers are those with a `cache_key` attribute; the returned list holds the ones
    whose `needs_cache` is true (the slots a pass may fill), in module order.
    """
    keys: list[str] = []
    for name, module in root.named_modules():
        if hasattr(module, "cache_key"):
            module.cache_key = name
            if module.needs_cache:
                keys.append(name)
    return keys
