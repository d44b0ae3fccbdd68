"""Pixel format conversions between the world (uint8 [T, H, W, 3]) and models ([3, T, H, W])."""

from __future__ import annotations

import numpy as np
import torch


def to_model_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] (or [B, T, H, W, 3]) -> float32 [3, T, H, W] (or [B, 3, T, H, W]) in [-1, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.dtype != torch.uint8 or x.shape[-1] != 3 or x.ndim not in (4, 5):
        raise ValueError(f"expected uint8 [..., T, H, W, 3], got {tuple(x.shape)} {x.dtype}")
    x = x.to(torch.float32) / 127.5 - 1.0
    return x.movedim(-1, -4).contiguous()


def from_model_output(video: torch.Tensor) -> np.ndarray:
    """float [3, T, H, W] (or [B, 3, T, H, W]) in [-1, 1] -> uint8 [T, H, W, 3] (or [B, ...])."""
    if video.ndim not in (4, 5) or video.shape[-4] != 3:
        raise ValueError(f"expected [..., 3, T, H, W], got {tuple(video.shape)}")
    x = ((video.detach().to(torch.float32).clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.movedim(-4, -1).contiguous().cpu().numpy()
