"""VSA attention on CPU against independent references (dense SDPA, explicit tile loops)."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from engine.sparse import (
    ChunkLayout,
    VSAConfig,
    dense_attention,
    gate_heads,
    make_gate_compress,
    pool_chunk_kv,
    vsa_attention,
)

GRID = (5, 7)  # does not divide into (3, 5, 4) or (2, 2, 3) tiles
SMALL_TILE = (2, 2, 3)  # more tiles on a small grid, partial in frames, rows and cols


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: with 2 OpenMP threads on a loaded shared machine every op can
    wait milliseconds for a sleeping thread, so run them on one (results do not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _qkv(layout: ChunkLayout, b: int = 2, h: int = 3, d: int = 16, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, layout.num_query_tokens, d, generator=g, dtype=dtype)
    k = torch.randn(b, h, layout.num_key_tokens, d, generator=g, dtype=dtype)
    v = torch.randn(b, h, layout.num_key_tokens, d, generator=g, dtype=dtype)
    gate = torch.randn(b, layout.num_query_tokens, h, d, generator=g, dtype=dtype)
    return q, k, v, gate


# -- independent reference (explicit geometry, no engine.sparse internals) ----------------------


def _ref_tiles(frames: tuple[int, ...], grid: tuple[int, int], tile: tuple[int, int, int]) -> list[list[int]]:
    """Token indices of each tile: chunk by chunk, tile boxes in (frame, row, col) order."""
    tiles, base = [], 0
    h, w = grid
    for f in frames:
        for tf, ty, tx in itertools.product(range(0, f, tile[0]), range(0, h, tile[1]), range(0, w, tile[2])):
            tiles.append(
                [
                    base + (ff * h + yy) * w + xx
                    for ff in range(tf, min(f, tf + tile[0]))
                    for yy in range(ty, min(h, ty + tile[1]))
                    for xx in range(tx, min(w, tx + tile[2]))
                ]
            )
        base += f * h * w
    return tiles


def _ref_tile_chunk(frames: tuple[int, ...], grid: tuple[int, int], tile: tuple[int, int, int]) -> list[int]:
    out = []
    for c, f in enumerate(frames):
        out += [c] * len(_ref_tiles((f,), grid, tile))
    return out


def _ref_coarse(q, k, v, layout: ChunkLayout, tile):
    """Pooled means, tile visibility, coarse logits and coarse output by explicit loops."""
    qtiles = _ref_tiles(layout.query_frames, layout.grid, tile)
    ktiles = _ref_tiles(layout.key_frames, layout.grid, tile)
    qchunk = _ref_tile_chunk(layout.query_frames, layout.grid, tile)
    kchunk = _ref_tile_chunk(layout.key_frames, layout.grid, tile)
    qc = torch.stack([q[:, :, t].mean(2) for t in qtiles], dim=2)
    kc = torch.stack([k[:, :, t].mean(2) for t in ktiles], dim=2)
    vc = torch.stack([v[:, :, t].mean(2) for t in ktiles], dim=2)
    vis = torch.tensor(
        [[layout.visible[qchunk[i]][kchunk[j]] for j in range(len(ktiles))] for i in range(len(qtiles))]
    )
    logits = (qc @ kc.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    logits = logits.masked_fill(~vis, float("-inf"))
    coarse = torch.softmax(logits, -1) @ vc
    return qtiles, ktiles, qchunk, kchunk, vis, logits, coarse


def _ref_vsa(q, k, v, gate, layout: ChunkLayout, tile, tile_mask):
    """fine (dense attention under the token mask of `tile_mask`) + gate * coarse."""
    qtiles, ktiles, *_, coarse = _ref_coarse(q, k, v, layout, tile)
    b, h = q.shape[:2]
    token_mask = torch.zeros(b, h, q.shape[2], k.shape[2], dtype=torch.bool)
    coarse_tok = torch.zeros_like(q)
    for i, qt in enumerate(qtiles):
        coarse_tok[:, :, qt] = coarse[:, :, i : i + 1]
        for j, kt in enumerate(ktiles):
            sel = tile_mask[:, :, i, j].view(b, h, 1, 1).expand(b, h, len(qt), len(kt))
            token_mask[:, :, torch.tensor(qt)[:, None], torch.tensor(kt)[None, :]] = sel
    fine = F.scaled_dot_product_attention(q, k, v, attn_mask=token_mask)
    return fine if gate is None else fine + gate.permute(0, 2, 1, 3) * coarse_tok


def _check_topk_rule(tile_mask, logits, vis, qchunk, kchunk, layout: ChunkLayout, sparsity, own, sink):
    """Each query tile selected exactly forced + K best visible tiles, K = ceil((1 - s) n)."""
    b, h, tq, tk = logits.shape
    for bi, hi, i in itertools.product(range(b), range(h), range(tq)):
        own_chunk = layout.query_chunks[qchunk[i]]
        visible = [j for j in range(tk) if vis[i, j]]
        forced = {
            j
            for j in visible
            if (own and kchunk[j] == own_chunk) or (sink and kchunk[j] < layout.sink_chunks)
        }
        kk = max(1, math.ceil((1 - sparsity) * len(visible) - 1e-9))
        chosen = {j for j in range(tk) if tile_mask[bi, hi, i, j]}
        assert chosen <= set(visible)
        assert forced <= chosen
        scored = chosen - forced
        assert len(scored) == min(kk, len(visible) - len(forced))
        rest = set(visible) - chosen
        if scored and rest:
            assert min(logits[bi, hi, i, j] for j in scored) >= max(logits[bi, hi, i, j] for j in rest)


# -- sparsity 0 == dense ------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [(3, 5, 4), SMALL_TILE])
@pytest.mark.parametrize(
    "layout",
    [
        ChunkLayout.cached(GRID, [3, 3], 3),
        ChunkLayout.full_sequence(GRID, 9, 3),
        ChunkLayout.full_sequence(GRID, 11, 3, window_frames=6, sink_chunks=1),
    ],
    ids=["cached", "full", "full-window-sink"],
)
def test_sparsity_zero_with_zero_gate_equals_dense(layout: ChunkLayout, tile) -> None:
    q, k, v, _ = _qkv(layout)
    cfg = VSAConfig(enabled=True, sparsity=0.0, tile=tile)
    gate = make_gate_compress(3 * 16)
    x = torch.randn(2, layout.num_query_tokens, 3 * 16)
    out = vsa_attention(q, k, v, gate_heads(gate, x, 3), layout, cfg)
    ref = dense_attention(q, k, v, layout)
    assert (out - ref).abs().max().item() < 1e-5
    # and dense_attention itself is the textbook masked softmax
    mask = torch.zeros(layout.num_query_tokens, layout.num_key_tokens, dtype=torch.bool)
    n = layout.tokens_per_frame
    qs = [0, *itertools.accumulate(f * n for f in layout.query_frames)]
    ks = [0, *itertools.accumulate(f * n for f in layout.key_frames)]
    for i, j in itertools.product(range(len(qs) - 1), range(len(ks) - 1)):
        mask[qs[i] : qs[i + 1], ks[j] : ks[j + 1]] = layout.visible[i][j]
    scores = (q @ k.transpose(-1, -2)) / 4.0 + torch.where(mask, 0.0, float("-inf"))
    torch.testing.assert_close(ref, torch.softmax(scores, -1) @ v, atol=1e-5, rtol=0)


def test_disabled_config_is_dense_and_ignores_the_gate() -> None:
    layout = ChunkLayout.full_sequence(GRID, 6, 3)
    q, k, v, gate = _qkv(layout)
    out = vsa_attention(q, k, v, gate, layout, VSAConfig(enabled=False, sparsity=0.9))
    assert torch.equal(out, dense_attention(q, k, v, layout))


# -- sparsity > 0 == dense under the selected-tile token mask (+ gate * coarse) ----------------


@pytest.mark.parametrize(
    ("layout", "sparsity", "own", "sink"),
    [
        (ChunkLayout.cached(GRID, [3, 3, 3], 3, sink_chunks=1), 0.7, False, False),
        (ChunkLayout.cached(GRID, [3, 3, 3], 3, sink_chunks=1), 0.8, True, True),
        (ChunkLayout.full_sequence(GRID, 11, 3, window_frames=6, sink_chunks=1), 0.6, False, False),
        (ChunkLayout.full_sequence(GRID, 9, 3), 0.75, True, False),
    ],
    ids=["cached", "cached-own-sink", "full-window-sink", "full-own"],
)
def test_sparse_equals_masked_dense_plus_gated_coarse(layout, sparsity, own, sink) -> None:
    q, k, v, gate = _qkv(layout, seed=1)
    cfg = VSAConfig(
        enabled=True, sparsity=sparsity, tile=SMALL_TILE, include_own_chunk=own, include_sink=sink
    )
    out, sel = vsa_attention(q, k, v, gate, layout, cfg, return_selection=True)
    # the selection follows the rule, judged on independently computed coarse logits
    _, _, qchunk, kchunk, vis, logits, _ = _ref_coarse(q, k, v, layout, SMALL_TILE)
    _check_topk_rule(sel.tile_mask, logits, vis, qchunk, kchunk, layout, sparsity, own, sink)
    assert 0 < sel.tile_mask.float().mean() < vis.float().mean()  # actually sparse
    # fine stage == dense attention restricted to the selected tiles; plus gate * coarse
    ref = _ref_vsa(q, k, v, gate, layout, SMALL_TILE, sel.tile_mask)
    assert (out - ref).abs().max().item() < 1e-5
    # the library's own token mask agrees with the reference's
    fine_only = vsa_attention(q, k, v, None, layout, cfg)
    lib_masked = F.scaled_dot_product_attention(q, k, v, attn_mask=sel.token_mask())
    assert (fine_only - lib_masked).abs().max().item() < 1e-5


def test_gathered_fine_stage_at_sparsity_zero_matches_dense() -> None:
    """The gather path itself (not the select-all shortcut) reproduces dense attention, also
    reading keys/values through a [B, L, H, D] cache layout viewed as [B, H, L, D]."""
    from engine.sparse.fine import gathered_attention
    from engine.sparse.tiles import from_slots, to_slots

    layout = ChunkLayout.cached(GRID, [3, 2], 3)
    q, k, v, _ = _qkv(layout)
    qt, kt = layout.query_tiling(SMALL_TILE), layout.key_tiling(SMALL_TILE)
    sel = torch.arange(kt.num_tiles).expand(2, 3, qt.num_tiles, -1)
    slot_tokens = kt.gather_index.view(kt.num_tiles, kt.slot_size)
    valid = kt.slot_valid.view(kt.num_tiles, kt.slot_size)
    ref = dense_attention(q, k, v, layout)
    k_cache = k.transpose(1, 2).contiguous()  # [B, L, H, D] like the KV cache
    v_cache = v.transpose(1, 2).contiguous()
    for kk, vv in [(k, v), (k_cache.transpose(1, 2), v_cache.transpose(1, 2)), (k, v_cache.transpose(1, 2))]:
        for budget in (1, 1 << 20):  # one row per batch, and many
            fine = gathered_attention(to_slots(q, qt), kk, vv, slot_tokens, valid, sel, 0.25, budget)
            assert (from_slots(fine, qt) - ref).abs().max().item() < 1e-5


def test_scratch_workspace_is_reused_across_modes() -> None:
    """The CPU fine stage keeps its scratch buffers between calls; they must stay writable
    whether the next call runs under inference_mode, no_grad or plain mode."""
    import engine.sparse.fine as fine

    layout = ChunkLayout.cached(GRID, [3, 3], 3)
    q, k, v, gate = _qkv(layout)
    cfg = VSAConfig(enabled=True, sparsity=0.7, tile=SMALL_TILE)
    fine.release_workspace()
    with torch.inference_mode():
        first = vsa_attention(q, k, v, gate, layout, cfg)
    with torch.no_grad():
        second = vsa_attention(q, k, v, gate, layout, cfg)
    third = vsa_attention(q, k, v, gate, layout, cfg)
    assert torch.equal(first, second) and torch.equal(second, third)
    bigger = ChunkLayout.cached(GRID, [3, 3, 3, 3], 3)  # the workspace grows when needed
    q2, k2, v2, gate2 = _qkv(bigger)
    _, sel = vsa_attention(q2, k2, v2, gate2, bigger, cfg, return_selection=True)
    ref = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=sel.token_mask())
    assert (vsa_attention(q2, k2, v2, None, bigger, cfg) - ref).abs().max().item() < 1e-5
    fine.release_workspace()


def test_selected_count_follows_k_rule_and_layer_override() -> None:
    layout = ChunkLayout.cached(GRID, [3, 3, 3], 3)  # 4 chunks x 12 tiles of SMALL_TILE
    q, k, v, gate = _qkv(layout)
    cfg = VSAConfig(enabled=True, sparsity=0.9, layer_sparsity=(0.5, 0.75, 0.0), tile=SMALL_TILE)
    n = 4 * len(_ref_tiles((3,), GRID, SMALL_TILE))
    for layer, expected in [(None, math.ceil(0.1 * n)), (0, n // 2), (1, n // 4), (2, n)]:
        _, sel = vsa_attention(q, k, v, gate, layout, cfg, layer=layer, return_selection=True)
        assert set(sel.selected_per_query_tile().unique().tolist()) == {expected}
    _, sel = vsa_attention(q, k, v, gate, layout, cfg, layer=0, sparsity=0.99, return_selection=True)
    assert set(sel.selected_per_query_tile().unique().tolist()) == {1}  # at least one tile


# -- cache: chunk by chunk == full sequence ------------------------------------------------------


@pytest.mark.parametrize(("window", "sink", "own"), [(None, 0, False), (9, 1, False), (6, 1, True)])
def test_cached_chunk_by_chunk_equals_full_sequence(window, sink, own) -> None:
    frames, cf = 14, 3  # 5 chunks, the last one of 2 frames
    full = ChunkLayout.full_sequence(GRID, frames, cf, window_frames=window, sink_chunks=sink)
    q, k, v, gate = _qkv(full, seed=3)
    cfg = VSAConfig(enabled=True, sparsity=0.7, tile=SMALL_TILE, include_own_chunk=own, include_sink=sink > 0)
    out_full, sel_full = vsa_attention(q, k, v, gate, full, cfg, return_selection=True)
    n = full.tokens_per_frame
    starts = [0, *itertools.accumulate(f * n for f in full.key_frames)]
    tile_starts = [0, *itertools.accumulate(len(_ref_tiles((f,), GRID, SMALL_TILE)) for f in full.key_frames)]
    # what a KV cache would hold: per chunk its K/V and its tile means (computed once)
    pooled = [
        pool_chunk_kv(
            k[:, :, starts[c] : starts[c + 1]], v[:, :, starts[c] : starts[c + 1]], GRID, f, SMALL_TILE
        )
        for c, f in enumerate(full.key_frames)
    ]
    for c, f in enumerate(full.key_frames):
        cached = [j for j in full.visible_key_chunks(c) if j != c]
        keys = [*cached, c]
        n_sink = sum(j < sink for j in keys)  # chunk 0 is the sink while it is generated
        layout = ChunkLayout.cached(GRID, [full.key_frames[j] for j in cached], f, sink_chunks=n_sink)
        kk = torch.cat([k[:, :, starts[j] : starts[j + 1]] for j in keys], dim=2)
        vv = torch.cat([v[:, :, starts[j] : starts[j + 1]] for j in keys], dim=2)
        pkv = None
        if cached:
            pkv = (torch.cat([pooled[j][0] for j in cached], 2), torch.cat([pooled[j][1] for j in cached], 2))
        qc = q[:, :, starts[c] : starts[c + 1]]
        gc = gate[:, starts[c] : starts[c + 1]]
        out_c, sel_c = vsa_attention(qc, kk, vv, gc, layout, cfg, pooled_kv=pkv, return_selection=True)
        # same tiles selected (mapped back to the full sequence's key tiles) ...
        rows = sel_full.tile_mask[:, :, tile_starts[c] : tile_starts[c + 1]]
        cols = torch.cat([torch.arange(tile_starts[j], tile_starts[j + 1]) for j in keys])
        assert torch.equal(rows[..., cols], sel_c.tile_mask)
        assert int(rows.sum()) == int(sel_c.tile_mask.sum())
        # ... and the same output
        assert (out_c - out_full[:, :, starts[c] : starts[c + 1]]).abs().max().item() < 1e-6
        # precomputed tile means give exactly what pooling inside the call gives
        plain = vsa_attention(qc, kk, vv, gc, layout, cfg)
        assert torch.equal(plain, out_c)


def test_pooled_kv_must_cover_whole_chunks() -> None:
    layout = ChunkLayout.cached(GRID, [3], 3)
    q, k, v, gate = _qkv(layout)
    kc, vc = pool_chunk_kv(k[:, :, :105], v[:, :, :105], GRID, 3, SMALL_TILE)
    cfg = VSAConfig(enabled=True, sparsity=0.5, tile=SMALL_TILE)
    with pytest.raises(ValueError, match="whole number"):
        vsa_attention(q, k, v, gate, layout, cfg, pooled_kv=(kc[:, :, :-1], vc[:, :, :-1]))


# -- no information from the future in full-sequence mode ----------------------------------------


@pytest.mark.parametrize("backend", ["torch", "flex"])
@pytest.mark.parametrize("window", [None, 6])
def test_future_chunks_do_not_leak(backend, window) -> None:
    layout = ChunkLayout.full_sequence(GRID, 12, 3, window_frames=window)
    q, k, v, gate = _qkv(layout, b=1, h=2, seed=5)  # small: eager flex materialises its mask
    cfg = VSAConfig(enabled=True, sparsity=0.6, tile=SMALL_TILE)
    cut = 2 * 3 * layout.tokens_per_frame  # chunks 0, 1 | chunks 2, 3
    q2, k2, v2, gate2 = q.clone(), k.clone(), v.clone(), gate.clone()
    for t in (q2, k2, v2, gate2.transpose(1, 2)):
        t[:, :, cut:] = 100.0 * torch.randn_like(t[:, :, cut:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex warns that it is unfused
        out = vsa_attention(q, k, v, gate, layout, cfg, backend=backend)
        out2 = vsa_attention(q2, k2, v2, gate2, layout, cfg, backend=backend)
    assert torch.equal(out[:, :, :cut], out2[:, :, :cut])
    assert not torch.allclose(out[:, :, cut:], out2[:, :, cut:])


@pytest.mark.parametrize("window", [None, 6])
def test_no_gradient_flows_from_earlier_outputs_to_future_chunks(window) -> None:
    layout = ChunkLayout.full_sequence(GRID, 12, 3, window_frames=window)
    q, k, v, gate = _qkv(layout, seed=5)
    cfg = VSAConfig(enabled=True, sparsity=0.6, tile=SMALL_TILE)
    cut = 2 * 3 * layout.tokens_per_frame
    for t in (q, k, v, gate):
        t.requires_grad_(True)
    vsa_attention(q, k, v, gate, layout, cfg)[:, :, :cut].sum().backward()
    assert k.grad is not None and v.grad is not None and q.grad is not None and gate.grad is not None
    assert torch.all(q.grad[:, :, cut:] == 0) and torch.all(gate.grad[:, cut:] == 0)
    assert torch.all(k.grad[:, :, cut:] == 0) and torch.all(v.grad[:, :, cut:] == 0)
    assert k.grad[:, :, :cut].abs().sum() > 0


# -- the flex path (eager on CPU) agrees with the reference path ---------------------------------


@pytest.mark.parametrize(
    "layout",
    [
        ChunkLayout.cached(GRID, [3, 3], 3, sink_chunks=1),
        ChunkLayout.full_sequence(GRID, 11, 3, window_frames=6),
    ],
    ids=["cached", "full-window"],
)
def test_flex_path_matches_torch_path(layout) -> None:
    q, k, v, gate = _qkv(layout, b=1, h=2, seed=7)
    cfg = VSAConfig(enabled=True, sparsity=0.7, tile=SMALL_TILE, include_sink=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out_f, sel_f = vsa_attention(q, k, v, gate, layout, cfg, backend="flex", return_selection=True)
    out_t, sel_t = vsa_attention(q, k, v, gate, layout, cfg, backend="torch", return_selection=True)
    assert torch.equal(sel_f.tile_mask, sel_t.tile_mask)
    assert (out_f - out_t).abs().max().item() < 1e-5


def test_flex_block_mask_lists_exactly_the_selection() -> None:
    """What the compiled kernel visits (the block lists) is the selection, block for block."""
    from engine.sparse.flex import selection_block_mask
    from engine.sparse.plan import selection_plan
    from engine.sparse.select import indices_to_mask, select_tiles_ragged

    layout = ChunkLayout.full_sequence(GRID, 9, 3)
    plan = selection_plan(layout, SMALL_TILE, 0.6, False, False, 64)
    tq, tk = plan.query_tiling.num_tiles, plan.key_tiling.num_tiles
    logits = torch.randn(2, 3, tq, tk).masked_fill(~plan.visible, float("-inf"))
    idx = select_tiles_ragged(logits, plan.counts)
    mask = indices_to_mask(idx, tk)
    assert torch.equal(mask.sum(-1), plan.counts.expand(2, 3, -1))
    assert not (mask & ~plan.visible).any()
    bm = selection_block_mask(idx, plan.counts, plan.key_tiling, mask)
    assert torch.equal(bm.to_dense().bool(), mask)
    # and the mask_mod alone (what an eager / fallback run applies) says the same per token
    kt = plan.key_tiling
    tokens = bm.mask_mod(
        torch.tensor(1), torch.tensor(2), torch.arange(tq * 64)[:, None], torch.arange(tk * 64)[None, :]
    )
    expected = mask[1, 2].repeat_interleave(64, 0).repeat_interleave(64, 1) & kt.slot_valid[None, :]
    assert torch.equal(tokens, expected)
