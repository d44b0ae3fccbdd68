"""PNG grids of frames for looking at samples by eye (reconstructions, teacher samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_grid(rows: list[np.ndarray], path: Path, every: int = 1, pad: int = 2) -> None:
    """rows: list of uint8 videos [T, H, W, 3]; one grid row per video, every `every`-th frame."""
    from PIL import Image

    rows = [r[::every] for r in rows]
    t = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[1:3]
    grid = np.full((len(rows) * (h + pad) + pad, t * (w + pad) + pad, 3), 255, np.uint8)
    for i, video in enumerate(rows):
        for j, frame in enumerate(video):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = frame
    Image.fromarray(grid).save(path)
