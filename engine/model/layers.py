"""Small building blocks of the Wan DiT: norms and the sinusoidal timestep embedding."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim in float32, then a learned gain (WanRMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm that returns the input dtype (WanLayerNorm); no affine unless asked."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = False) -> None:
        super().__init__(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).type_as(x)


def sinusoidal_embedding(dim: int, timesteps: torch.Tensor) -> torch.Tensor:
    """[N] timesteps -> [N, dim] float64 embedding cat(cos(t w), sin(t w)), w_j = 10000^(-j/half).

    Timesteps are used as given (float, not rounded: the reference feeds 833.333...).
    """
    half = dim // 2
    t = timesteps.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device).div(half))
    sinusoid = torch.outer(t, freqs)
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)
