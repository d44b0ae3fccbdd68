"""Tile-level selection plan of one attention call: visible tiles, forced tiles and K per chunk.

Everything here depends only on the layout, the tile shape, the sparsity and the policy, not on
the data, so it is computed once per distinct call shape and cached.

Selection rule (identical in cached and full-sequence mode, and for the t=0 cache refresh):
for a query tile of query chunk i, with n visible key tiles,

    K = max(1, ceil((1 - sparsity) * n))              # scored budget
    forced = own-chunk tiles (include_own_chunk) + sink-chunk tiles (include_sink), if visible
    selected = forced + the K best-scoring non-forced visible tiles   (at most n in all)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from engine.sparse.config import num_selected
from engine.sparse.layout import ChunkLayout
from engine.sparse.tiles import TileShape, Tiling, build_tiling


@dataclass(frozen=True, eq=False)
class ChunkPlan:
    """Selection plan of the query tiles of one query chunk."""

    query_tiles: slice  # this chunk's tiles in the query tiling
    query_tokens: slice  # this chunk's tokens in the query token order
    tiling: Tiling  # tiling of this chunk alone (its tiles = query_tiles, in the same order)
    key_tiles: torch.Tensor | None  # [n] visible key tiles (ascending); None = every key tile
    key_tokens: torch.Tensor | None  # [m] tokens of the visible key chunks; None = every key token
    forced: torch.Tensor | None  # [n] bool over the visible tiles; None = nothing forced
    num_visible: int
    count: int  # key tiles selected per query tile (forced included)


@dataclass(frozen=True, eq=False)
class SelectionPlan:
    query_tiling: Tiling
    key_tiling: Tiling
    chunks: tuple[ChunkPlan, ...]
    visible: torch.Tensor  # [Tq, Tk] bool
    forced: torch.Tensor | None  # [Tq, Tk] bool
    counts: torch.Tensor  # [Tq] long, selected key tiles per query tile

    @property
    def selects_all(self) -> bool:
        return all(c.count == c.num_visible for c in self.chunks)


@functools.lru_cache(maxsize=512)
def selection_plan(
    layout: ChunkLayout,
    tile: TileShape,
    sparsity: float,
    include_own_chunk: bool,
    include_sink: bool,
    slot_size: int | None = None,
) -> SelectionPlan:
    qt = layout.query_tiling(tile, slot_size)
    kt = layout.key_tiling(tile, slot_size)
    tq, tk = qt.num_tiles, kt.num_tiles
    visible = torch.zeros(tq, tk, dtype=torch.bool)
    forced = torch.zeros(tq, tk, dtype=torch.bool)
    counts = torch.zeros(tq, dtype=torch.long)
    chunks = []
    n = layout.tokens_per_frame
    key_token_start = [sum(layout.key_frames[:j]) * n for j in range(len(layout.key_frames) + 1)]
    for i, own in enumerate(layout.query_chunks):
        rows = slice(qt.chunk_tile_start[i], qt.chunk_tile_start[i + 1])
        q_start = sum(layout.query_frames[:i]) * n
        vis_chunks = layout.visible_key_chunks(i)
        key_tokens = [torch.arange(key_token_start[j], key_token_start[j + 1]) for j in vis_chunks]
        forced_chunks = set()
        if include_own_chunk:
            forced_chunks.add(own)
        if include_sink:
            forced_chunks.update(j for j in vis_chunks if j < layout.sink_chunks)
        key_tiles = [t for j in vis_chunks for t in kt.chunk_tiles(j)]
        forced_flags = [int(kt.tile_chunk[t]) in forced_chunks for t in key_tiles]
        n_vis, n_forced = len(key_tiles), sum(forced_flags)
        count = min(n_vis, n_forced + num_selected(n_vis, sparsity))
        key_idx = torch.tensor(key_tiles, dtype=torch.long)
        forced_t = torch.tensor(forced_flags, dtype=torch.bool)
        visible[rows, key_idx] = True
        forced[rows, key_idx] = forced_t
        counts[rows] = count
        chunks.append(
            ChunkPlan(
                query_tiles=rows,
                query_tokens=slice(q_start, q_start + layout.query_frames[i] * n),
                tiling=build_tiling((layout.query_frames[i],), layout.grid, tile, slot_size),
                key_tiles=None if n_vis == tk else key_idx,
                key_tokens=None if n_vis == tk else torch.cat(key_tokens),
                forced=forced_t if n_forced else None,
                num_visible=n_vis,
                count=count,
            )
        )
    return SelectionPlan(
        query_tiling=qt,
        key_tiling=kt,
        chunks=tuple(chunks),
        visible=visible,
        forced=forced if bool(forced.any()) else None,
        counts=counts,
    )


@functools.lru_cache(maxsize=512)
def _plan_on_device(plan: SelectionPlan, device: torch.device) -> dict[str, torch.Tensor | None]:
    return {
        "visible": plan.visible.to(device),
        "forced": None if plan.forced is None else plan.forced.to(device),
        "counts": plan.counts.to(device),
    }


def plan_tensor(plan: SelectionPlan, name: str, device: torch.device) -> torch.Tensor | None:
    """`visible`, `forced` or `counts` of a plan on `device` (copied once, then cached)."""
    if device.type == "cpu":
        return getattr(plan, name)
    return _plan_on_device(plan, device)[name]
