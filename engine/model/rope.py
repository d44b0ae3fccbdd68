"""3-D rotary position embedding (RoPE) of the Wan DiT, computed on the fly.

Each head's channels are read as complex pairs (x[2i], x[2i+1]). With c = head_dim / 2 pairs,
the first c - 2*(c//3) pairs rotate with the latent-frame index, the next c//3 with the row and
the last c//3 with the column of the token in its frame. Pair j of a section with n channels
rotates by the angle  p * theta^(-2j/n)  for position p (theta = 10000).

The reference precomputes a 1024-position complex table and indexes it, so a stream crashes
after 1024 latent frames. Here angles are computed in float64 from the integer positions for
every call: the numbers are identical to the table where the table exists, and there is no
upper limit. float64 keeps the angle exact to ~1e-16 relative, so at frame 10^6 the absolute
angle error is ~1e-10 rad — far below the float32 resolution of the rotated keys. Because the
attention score of a rotated query at position p and a rotated key at position p' depends only
on p - p', absolute positions are as good as window-relative ones numerically (see
docs/models.md, "Positions in the rolling window").
"""

from __future__ import annotations

import torch

THETA = 10000.0


def rope_sections(head_dim: int) -> tuple[int, int, int]:
    """Number of complex pairs rotating with (frame, row, column)."""
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def _inv_freq(pairs: int, device: torch.device) -> torch.Tensor:
    # [pairs] float64; same formula as the reference table: 1 / theta^(2j / (2*pairs))
    n = 2 * pairs
    return 1.0 / torch.pow(THETA, torch.arange(0, n, 2, dtype=torch.float64, device=device).div(n))


def rope_angles(
    head_dim: int,
    frame_positions: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Rotation angles for a [F, height, width] token grid.

    frame_positions: [F] integer latent-frame indices (absolute in the stream).
    Returns [F * height * width, head_dim // 2] float64 angles in token order (frame, row, col).
    """
    device = frame_positions.device
    nf, nh, nw = rope_sections(head_dim)
    f = frame_positions.to(torch.float64)
    ang_f = torch.outer(f, _inv_freq(nf, device))  # [F, nf]
    ang_h = torch.outer(torch.arange(height, dtype=torch.float64, device=device), _inv_freq(nh, device))
    ang_w = torch.outer(torch.arange(width, dtype=torch.float64, device=device), _inv_freq(nw, device))
    frames = f.numel()
    grid = torch.cat(
        [
            ang_f.view(frames, 1, 1, nf).expand(frames, height, width, nf),
            ang_h.view(1, height, 1, nh).expand(frames, height, width, nh),
            ang_w.view(1, 1, width, nw).expand(frames, height, width, nw),
        ],
        dim=-1,
    )
    return grid.reshape(frames * height * width, nf + nh + nw)


def rope_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Unit complex rotations exp(i * angle), complex128, same shape as `angles`."""
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, H, D] by rotation [B or 1, L, D/2] (complex128); returns x's dtype.

    The product is formed in complex128 and cast back, as the reference does. Under autocast
    (mixed-precision training, where the rotated q/k go into bf16 products anyway) it is formed
    in complex64: a float64 pass over every q and k was a tenth of a CPU training step.
    """
    b, length, heads, d = x.shape
    mixed = torch.is_autocast_enabled(x.device.type)
    real, rot = (torch.float32, rotation.to(torch.complex64)) if mixed else (torch.float64, rotation)
    xc = torch.view_as_complex(x.to(real).reshape(b, length, heads, d // 2, 2))
    out = torch.view_as_real(xc * rot.unsqueeze(2)).flatten(3)
    return out.type_as(x)
