"""Coarse stage (attention between tile means) and top-K key-tile selection.

The coarse stage is cheap (tiles, not tokens) and does two jobs: its output is the global
summary that the gate mixes back in, and its logits rank the key tiles for the fine stage.
Selection uses the logits, not the probabilities: softmax is monotonic per row, and logits do
not underflow into ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.sparse.tiles import Tiling, tiling_tensor


def coarse_attention(
    qc: torch.Tensor,  # [B, H, Tq, D] query tile means
    kc: torch.Tensor,  # [B, H, Tk, D] key tile means
    vc: torch.Tensor,  # [B, H, Tk, D] value tile means
    scale: float,
    tile_mask: torch.Tensor | None = None,  # [Tq, Tk] or [B, H, Tq, Tk] bool, True = visible
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention over tiles. Returns (output [B, H, Tq, D], logits [B, H, Tq, Tk]).

    Invisible key tiles get -inf logits *before* the softmax, so they carry no weight and (with
    the same -inf kept for selection) can never be chosen: nothing flows from a future chunk.
    Every query row must see at least one tile (its own chunk is always visible).
    """
    logits = torch.matmul(qc, kc.transpose(-1, -2)) * scale  # [B, H, Tq, Tk]
    if tile_mask is not None:
        logits = logits.masked_fill(~tile_mask, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.matmul(probs, vc), logits


def select_tiles(
    logits: torch.Tensor,  # [B, H, Tq, Tk], -inf where invisible
    count: int,
    forced: torch.Tensor | None = None,  # [Tq, Tk] or [Tk] bool, always selected (if visible)
) -> torch.Tensor:
    """Indices [B, H, Tq, count] of the selected key tiles, ascending within each row.

    Forced tiles are ranked first (+inf), then the best-scoring ones. `count` must not exceed
    the number of visible tiles of any row, so no invisible tile is ever selected.
    Ascending order keeps the gather cache-friendly and the fine-stage summation order fixed.
    """
    scores = logits.detach()
    if forced is not None:
        scores = scores.masked_fill(forced & torch.isfinite(scores), float("inf"))
    if count >= scores.shape[-1]:
        return torch.arange(scores.shape[-1], device=scores.device).expand(*scores.shape[:-1], -1)
    idx = torch.topk(scores, count, dim=-1, sorted=False).indices
    return torch.sort(idx, dim=-1).values


def select_tiles_ragged(
    logits: torch.Tensor,  # [B, H, Tq, Tk], -inf where invisible
    counts: torch.Tensor,  # [Tq] long, tiles to select per query tile
    forced: torch.Tensor | None = None,  # [Tq, Tk] bool
) -> torch.Tensor:
    """Like `select_tiles` with a per-row count. Returns [B, H, Tq, max(counts)] ascending,
    each row's first `counts[row]` entries valid and the rest filled with Tk (a sentinel)."""
    scores = logits.detach()
    if forced is not None:
        scores = scores.masked_fill(forced & torch.isfinite(scores), float("inf"))
    num_keys = scores.shape[-1]
    kmax = int(counts.max())
    idx = torch.topk(scores, kmax, dim=-1, sorted=True).indices  # descending score
    rank = torch.arange(kmax, device=idx.device)
    keep = rank.view(1, 1, 1, -1) < counts.view(1, 1, -1, 1)
    idx = torch.where(keep, idx, torch.full_like(idx, num_keys))
    return torch.sort(idx, dim=-1).values


@dataclass(frozen=True, eq=False)
class VSASelection:
    """Which key tiles each query tile attended to in the fine stage (for tests and analysis)."""

    tile_mask: torch.Tensor  # [B, H, Tq, Tk] bool over all query tiles x all key tiles
    query_tiling: Tiling
    key_tiling: Tiling

    def selected_per_query_tile(self) -> torch.Tensor:
        """[B, H, Tq] number of selected key tiles."""
        return self.tile_mask.sum(dim=-1)

    def token_mask(self) -> torch.Tensor:
        """The equivalent token mask [B, H, Lq, Lk] (True = query token attends to key token)."""
        dev = self.tile_mask.device
        q_tiles = tiling_tensor(self.query_tiling, "tile_of_token", dev)
        k_tiles = tiling_tensor(self.key_tiling, "tile_of_token", dev)
        return self.tile_mask.index_select(2, q_tiles).index_select(3, k_tiles)


def indices_to_mask(idx: torch.Tensor, num_keys: int) -> torch.Tensor:
    """[..., K] key-tile indices (entries == num_keys are padding) -> [..., num_keys] bool."""
    mask = torch.zeros(*idx.shape[:-1], num_keys + 1, dtype=torch.bool, device=idx.device)
    mask.scatter_(-1, idx, True)
    return mask[..., :num_keys]
