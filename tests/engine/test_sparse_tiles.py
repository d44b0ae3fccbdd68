"""Tiling of chunked video tokens: geometry, permutations, slot layout, pooling."""

from __future__ import annotations

import itertools

import pytest
import torch

from engine.sparse.tiles import (
    DEFAULT_TILE,
    build_tiling,
    from_slots,
    pool_slots,
    pool_slots_after,
    pool_tiles,
    tile_stats,
    to_slots,
)

CASES = [
    ((3, 3), (5, 7), (3, 5, 4)),  # partial columns
    ((3, 3, 2), (5, 7), (2, 2, 3)),  # partial frames, rows, cols, a short last chunk
    ((1, 3), (4, 6), (3, 5, 4)),  # a 1-frame chunk (odd configs), tile taller than the grid
    ((3,), (30, 52), DEFAULT_TILE),  # Wan: divides evenly
]


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: with 2 OpenMP threads on a loaded shared machine every op can
    wait milliseconds for a sleeping thread, so run them on one (results do not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _coords(chunk_frames: tuple[int, ...], grid: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """(chunk, frame in chunk, row, col) of each token in token order."""
    return [
        (c, f, y, x)
        for c, frames in enumerate(chunk_frames)
        for f, y, x in itertools.product(range(frames), range(grid[0]), range(grid[1]))
    ]


@pytest.mark.parametrize(("chunk_frames", "grid", "tile"), CASES)
def test_tiles_are_boxes_inside_one_chunk_covering_every_token_once(chunk_frames, grid, tile) -> None:
    t = build_tiling(chunk_frames, grid, tile)
    coords = _coords(chunk_frames, grid)
    assert t.num_tokens == len(coords)
    members: dict[int, list[tuple[int, int, int, int]]] = {}
    for i, c in enumerate(coords):
        members.setdefault(int(t.tile_of_token[i]), []).append(c)
    assert sorted(members) == list(range(t.num_tiles))
    for tile_id, pts in members.items():
        chunks = {p[0] for p in pts}
        assert chunks == {int(t.tile_chunk[tile_id])}, "a tile crosses a chunk boundary"
        assert len(pts) == int(t.counts[tile_id]) <= 64
        f0, y0, x0 = (min(p[i] for p in pts) for i in (1, 2, 3))
        # a tile is the full box between its min and max corners, aligned to the tile grid
        f1, y1, x1 = (max(p[i] for p in pts) for i in (1, 2, 3))
        assert len(pts) == (f1 - f0 + 1) * (y1 - y0 + 1) * (x1 - x0 + 1)
        assert (f0 % tile[0], y0 % tile[1], x0 % tile[2]) == (0, 0, 0)
        assert (f1 - f0 < tile[0], y1 - y0 < tile[1], x1 - x0 < tile[2]) == (True, True, True)
    # tiles of a chunk are contiguous, chunks in order
    for c in range(len(chunk_frames)):
        assert set(t.tile_chunk[list(t.chunk_tiles(c))].tolist()) == {c}


@pytest.mark.parametrize(("chunk_frames", "grid", "tile"), CASES)
def test_permutations_and_slot_layout_round_trip(chunk_frames, grid, tile) -> None:
    t = build_tiling(chunk_frames, grid, tile)
    x = torch.randn(2, 3, t.num_tokens, 5)
    in_tile_order = x.index_select(2, t.to_tile_index)
    assert torch.equal(in_tile_order.index_select(2, t.to_token_index), x)
    # tile order = tiles one after another, each tile's tokens contiguous
    tiles_in_order = t.tile_of_token[t.to_tile_index]
    assert torch.equal(tiles_in_order, torch.repeat_interleave(torch.arange(t.num_tiles), t.counts))
    slots = to_slots(x, t)
    assert slots.shape == (2, 3, t.num_tiles, t.slot_size, 5)
    assert torch.equal(from_slots(slots, t), x)
    empty = ~t.slot_valid.view(t.num_tiles, t.slot_size)
    assert torch.all(slots[:, :, empty] == 0)
    assert int(t.slot_valid.sum()) == t.num_tokens
    # a wider slot layout (the flex path's 64) holds the same tokens
    wide = build_tiling(chunk_frames, grid, tile, 64)
    assert torch.equal(from_slots(to_slots(x, wide), wide), x)


@pytest.mark.parametrize(("chunk_frames", "grid", "tile"), CASES[:3])
def test_pooling_is_the_mean_over_real_tokens(chunk_frames, grid, tile) -> None:
    t = build_tiling(chunk_frames, grid, tile)
    x = torch.randn(1, 2, t.num_tokens, 4, dtype=torch.float64)
    pooled = pool_tiles(x, t)
    for tile_id in range(t.num_tiles):
        tokens = (t.tile_of_token == tile_id).nonzero().view(-1)
        torch.testing.assert_close(pooled[:, :, tile_id], x[:, :, tokens].mean(dim=2))
    # reusing precomputed means of the leading chunks gives the same result
    m = t.chunk_tile_start[1]
    again = pool_slots_after(to_slots(x, t), t, pooled[:, :, :m].clone())
    assert torch.equal(again, pool_slots(to_slots(x, t), t))
    with pytest.raises(ValueError, match="whole number"):
        pool_slots_after(to_slots(x, t), t, pooled[:, :, : m - 1])


def test_default_tile_fits_wan_exactly() -> None:
    stats = tile_stats((30, 52), 3, DEFAULT_TILE)
    assert stats["tiles"] == 78 and stats["full_tiles"] == 78
    assert stats["slot_use"] == pytest.approx(4680 / (78 * 64))
    # the obvious alternatives waste more slots on this grid
    for other in [(1, 8, 8), (3, 4, 5), (3, 4, 4), (2, 4, 8)]:
        assert tile_stats((30, 52), 3, other)["slot_use"] < stats["slot_use"]


def test_bad_tiles_are_rejected() -> None:
    with pytest.raises(ValueError, match="more than 64"):
        build_tiling((3,), (8, 8), (3, 5, 5))
    with pytest.raises(ValueError, match="positive"):
        build_tiling((3,), (8, 8), (0, 5, 5))
    with pytest.raises(ValueError, match="slot_size"):
        build_tiling((3,), (8, 8), (3, 5, 4), 32)
