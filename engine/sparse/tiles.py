"""Tiling of a chunked video token sequence into small 3-D boxes (the unit of VSA sparsity).

Tokens arrive frame-major (frame, row, col) and chunk after chunk. Attention sparsity is
decided per *tile*: a (tt, th, tw) box of at most 64 tokens inside one chunk, so a selected
tile is a compact spatio-temporal neighbourhood and a tile never mixes two chunks (the cache
holds, evicts and masks whole chunks, so tile bookkeeping stays valid when the cache rolls).

Grids that do not divide evenly get *partial* tiles at the right/bottom/last-frame edges. They
are handled with per-tile token counts and slot masks, never by padding the video: a padded
video would change what real tokens attend to.

Two orders exist beside token order:

* **tile order**: the same L tokens, permuted so that each tile's tokens are contiguous
  (tile after tile, inside a tile frame-major). `to_tile_index` / `to_token_index` map between
  the orders.
* **slot layout**: every tile owns `slot_size` consecutive slots (`slot_size` >= the tile volume),
  real tokens first, the rest empty (zero, flagged by `slot_valid`). With equal-size tiles this
  is a reshape away from a batched [tiles, slot_size, D] tensor, which is what the fine stage
  gathers from. For Wan's default tile shape (3, 5, 4) on the 30x52 grid every tile is full, so
  the slot layout is a pure permutation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

TileShape = tuple[int, int, int]

MAX_TILE_TOKENS = 64
# (frames, rows, cols). Divides Wan's 30x52 post-patch grid and a 3-frame chunk exactly: 78 full
# tiles of 60 tokens per chunk (93.75 % of 64-token slots used). See docs/models.md.
DEFAULT_TILE: TileShape = (3, 5, 4)


@dataclass(frozen=True, eq=False)
class Tiling:
    """Tile structure of a sequence of chunks on one grid (all index tensors are int64).

    Shapes: L = tokens, T = tiles, S = `slot_size`.
    """

    chunk_frames: tuple[int, ...]
    grid: tuple[int, int]
    tile: TileShape
    slot_size: int
    chunk_tile_start: tuple[int, ...]  # first tile of each chunk, plus T at the end
    counts: torch.Tensor  # [T] real tokens per tile
    tile_chunk: torch.Tensor  # [T] chunk index of each tile
    tile_of_token: torch.Tensor  # [L] tile of each token (token order)
    to_tile_index: torch.Tensor  # [L] x_tile_order = x.index_select(dim, to_tile_index)
    to_token_index: torch.Tensor  # [L] x = x_tile_order.index_select(dim, to_token_index)
    slot_of_token: torch.Tensor  # [L] slot (tile * S + position) of each token
    token_of_slot: torch.Tensor  # [T * S] token in each slot; L (one past the end) if empty
    gather_index: torch.Tensor  # [T * S] token in each slot; 0 if empty (masked by slot_valid)
    slot_valid: torch.Tensor  # [T * S] bool, slot holds a real token

    @property
    def num_tokens(self) -> int:
        return int(self.tile_of_token.numel())

    @property
    def num_tiles(self) -> int:
        return int(self.counts.numel())

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_frames)

    @property
    def is_full(self) -> bool:
        """Every tile fills all its slots (slot layout is a permutation, no masking needed)."""
        return self.num_tiles * self.slot_size == self.num_tokens

    def chunk_tiles(self, chunk: int) -> range:
        """Tile indices of one chunk (tiles of a chunk are contiguous)."""
        return range(self.chunk_tile_start[chunk], self.chunk_tile_start[chunk + 1])

    def slot_use(self) -> float:
        """Fraction of 64-token kernel slots holding real tokens (1.0 = no waste)."""
        return self.num_tokens / (self.num_tiles * MAX_TILE_TOKENS)


def tile_volume(tile: TileShape) -> int:
    return tile[0] * tile[1] * tile[2]


def check_tile(tile: Sequence[int]) -> TileShape:
    if len(tile) != 3 or any(int(t) < 1 for t in tile):
        raise ValueError(f"tile shape must be three positive ints, got {tile!r}")
    shape = (int(tile[0]), int(tile[1]), int(tile[2]))
    if tile_volume(shape) > MAX_TILE_TOKENS:
        raise ValueError(f"tile {shape} holds more than {MAX_TILE_TOKENS} tokens")
    return shape


def _chunk_token_keys(frames: int, grid: tuple[int, int], tile: TileShape) -> tuple[torch.Tensor, ...]:
    """For each token of one chunk (token order): (tile index in chunk, position in tile, tile count)."""
    h, w = grid
    tt, th, tw = tile
    f_idx = torch.arange(frames).view(-1, 1, 1).expand(frames, h, w).reshape(-1)
    y_idx = torch.arange(h).view(1, -1, 1).expand(frames, h, w).reshape(-1)
    x_idx = torch.arange(w).view(1, 1, -1).expand(frames, h, w).reshape(-1)
    nt, ny, nx = math.ceil(frames / tt), math.ceil(h / th), math.ceil(w / tw)
    it, iy, ix = f_idx // tt, y_idx // th, x_idx // tw
    tile_idx = (it * ny + iy) * nx + ix
    # row/col extent of the (possibly partial) tile each token is in (frames need no extent:
    # the frame index is the slowest-varying position inside a tile)
    ext_y = torch.clamp(h - iy * th, max=th)
    ext_x = torch.clamp(w - ix * tw, max=tw)
    pos = ((f_idx - it * tt) * ext_y + (y_idx - iy * th)) * ext_x + (x_idx - ix * tw)
    # counts per tile of this chunk, in tile index order
    sizes_t = torch.clamp(frames - torch.arange(nt) * tt, max=tt)
    sizes_y = torch.clamp(h - torch.arange(ny) * th, max=th)
    sizes_x = torch.clamp(w - torch.arange(nx) * tw, max=tw)
    counts = (sizes_t.view(-1, 1, 1) * sizes_y.view(1, -1, 1) * sizes_x.view(1, 1, -1)).reshape(-1)
    return tile_idx, pos, counts


def build_tiling(
    chunk_frames: Sequence[int], grid: Sequence[int], tile: Sequence[int], slot_size: int | None = None
) -> Tiling:
    """Tile a sequence of chunks (`chunk_frames[i]` latent frames each) on an (h, w) grid.

    `slot_size` defaults to the tile volume (tightest slot layout); the FlexAttention path asks
    for 64 so that one tile is one kernel block. Cached: the same arguments return the same
    object (index tensors are built once, device copies are cached per object).
    """
    shape = check_tile(tile)
    frames = tuple(int(f) for f in chunk_frames)
    if not frames or any(f < 1 for f in frames):
        raise ValueError(f"chunk frame counts must be positive, got {chunk_frames!r}")
    if len(grid) != 2 or grid[0] < 1 or grid[1] < 1:
        raise ValueError(f"grid must be two positive ints, got {grid!r}")
    vol = tile_volume(shape)
    slots = vol if slot_size is None else int(slot_size)
    if slots < vol:
        raise ValueError(f"slot_size {slots} is smaller than the tile volume {vol}")
    return _build_tiling(frames, (int(grid[0]), int(grid[1])), shape, slots)


@functools.lru_cache(maxsize=256)
def _build_tiling(
    chunk_frames: tuple[int, ...], grid: tuple[int, int], tile: TileShape, slots: int
) -> Tiling:
    tiles_of_token, positions, counts, chunk_of_tile, starts = [], [], [], [], [0]
    for c, frames in enumerate(chunk_frames):
        tile_idx, pos, cnt = _chunk_token_keys(int(frames), grid, tile)
        tiles_of_token.append(tile_idx + starts[-1])
        positions.append(pos)
        counts.append(cnt)
        chunk_of_tile.append(torch.full((cnt.numel(),), c, dtype=torch.long))
        starts.append(starts[-1] + cnt.numel())
    tile_of_token = torch.cat(tiles_of_token)
    pos = torch.cat(positions)
    count = torch.cat(counts)
    num_tokens, num_tiles = tile_of_token.numel(), count.numel()
    slot_of_token = tile_of_token * slots + pos
    # tile order: sort tokens by slot (tile, then position inside the tile); slots are unique
    to_tile_index = torch.argsort(slot_of_token)
    to_token_index = torch.empty_like(to_tile_index)
    to_token_index[to_tile_index] = torch.arange(num_tokens)
    token_of_slot = torch.full((num_tiles * slots,), num_tokens, dtype=torch.long)
    token_of_slot[slot_of_token] = torch.arange(num_tokens)
    slot_valid = token_of_slot < num_tokens
    return Tiling(
        chunk_frames=chunk_frames,
        grid=grid,
        tile=tile,
        slot_size=slots,
        chunk_tile_start=tuple(starts),
        counts=count,
        tile_chunk=torch.cat(chunk_of_tile),
        tile_of_token=tile_of_token,
        to_tile_index=to_tile_index,
        to_token_index=to_token_index,
        slot_of_token=slot_of_token,
        token_of_slot=token_of_slot,
        gather_index=torch.where(slot_valid, token_of_slot, 0),
        slot_valid=slot_valid,
    )


@functools.lru_cache(maxsize=256)
def _device_tensors(tiling: Tiling, device: torch.device) -> dict[str, torch.Tensor]:
    names = ("counts", "tile_of_token", "slot_of_token", "token_of_slot", "gather_index", "slot_valid")
    return {n: getattr(tiling, n).to(device) for n in names}


def tiling_tensor(tiling: Tiling, name: str, device: torch.device) -> torch.Tensor:
    """An index tensor of `tiling` on `device` (copied once per device, then cached)."""
    if device.type == "cpu":
        return getattr(tiling, name)
    return _device_tensors(tiling, device)[name]


def to_slots(x: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """Token order [B, H, L, D] -> slot layout [B, H, T, S, D] (empty slots are zero)."""
    b, h, length, d = x.shape
    if length != tiling.num_tokens:
        raise ValueError(f"expected {tiling.num_tokens} tokens, got {length}")
    index = tiling_tensor(tiling, "token_of_slot", x.device)
    if not tiling.is_full:  # empty slots point one past the end: at an appended zero row
        x = torch.cat([x, x.new_zeros(b, h, 1, d)], dim=2)
    return x.index_select(2, index).view(b, h, tiling.num_tiles, tiling.slot_size, d)


def from_slots(xs: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """Slot layout [B, H, T, S, D] (or [B, H, T*S, D]) -> token order [B, H, L, D]."""
    b, h = xs.shape[:2]
    flat = xs.reshape(b, h, tiling.num_tiles * tiling.slot_size, xs.shape[-1])
    return flat.index_select(2, tiling_tensor(tiling, "slot_of_token", xs.device))


def pool_slots(xs: torch.Tensor, tiling: Tiling, first_tile: int = 0) -> torch.Tensor:
    """Mean over the real tokens of each tile: [B, H, T', S, D] -> [B, H, T', D].

    `xs` holds tiles `first_tile ..` of `tiling` (all of them by default). Empty slots are zero,
    so the slot sum is the sum over real tokens; dividing by the real count (not the slot
    count) keeps partial tiles unbiased.
    """
    counts = tiling_tensor(tiling, "counts", xs.device)[first_tile : first_tile + xs.shape[2]]
    return xs.sum(dim=3) / counts.to(xs.dtype).view(1, 1, -1, 1)


def pool_slots_after(xs: torch.Tensor, tiling: Tiling, prefix: torch.Tensor | None) -> torch.Tensor:
    """Tile means [B, H, T, D] of all tiles of `xs` [B, H, T, S, D], reusing `prefix`
    [B, H, m, D] (precomputed means of the first m tiles, m a whole number of chunks)."""
    if prefix is None:
        return pool_slots(xs, tiling)
    m = prefix.shape[2]
    if m not in tiling.chunk_tile_start or prefix.shape[:2] != xs.shape[:2] or prefix.shape[3] != xs.shape[4]:
        raise ValueError(f"precomputed tile means cover {m} tiles: not a whole number of leading chunks")
    return torch.cat([prefix, pool_slots(xs[:, :, m:], tiling, m)], dim=2)


def pool_tiles(x: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """Tile means straight from token order: [B, H, L, D] -> [B, H, T, D]."""
    return pool_slots(to_slots(x, tiling), tiling)


def pool_tiles_after(x: torch.Tensor, tiling: Tiling, prefix: torch.Tensor | None) -> torch.Tensor:
    """Tile means [B, H, T, D] of x [B, H, L, D] (token order), reusing `prefix` [B, H, m, D]
    (precomputed means of the first m tiles, m a whole number of chunks): only the tokens of
    the remaining chunks are read."""
    if prefix is None:
        return pool_tiles(x, tiling)
    m = prefix.shape[2]
    if m not in tiling.chunk_tile_start or prefix.shape[:2] != x.shape[:2] or prefix.shape[3] != x.shape[3]:
        raise ValueError(f"precomputed tile means cover {m} tiles: not a whole number of leading chunks")
    j = tiling.chunk_tile_start.index(m)
    if j == tiling.num_chunks:
        return prefix
    tail = build_tiling(tiling.chunk_frames[j:], tiling.grid, tiling.tile)
    start = sum(tiling.chunk_frames[:j]) * tiling.grid[0] * tiling.grid[1]
    return torch.cat([prefix, pool_tiles(x[:, :, start:], tail)], dim=2)


def tile_stats(grid: tuple[int, int], chunk_frames: int, tile: TileShape) -> dict[str, float]:
    """Tiles per chunk, full tiles and slot use of one chunk (for choosing a tile shape)."""
    t = build_tiling((chunk_frames,), grid, tile)
    return {
        "tiles": t.num_tiles,
        "full_tiles": int((t.counts == tile_volume(tile)).sum()),
        "tokens_per_tile": t.num_tokens / t.num_tiles,
        "slot_use": t.slot_use(),
    }
