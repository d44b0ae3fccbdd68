"""Backward through VSA: gradcheck in float64, and agreement with the masked dense reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import engine.sparse.fine as fine
from engine.sparse import ChunkLayout, VSAConfig, gate_heads, make_gate_compress, vsa_attention


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: with 2 OpenMP threads on a loaded shared machine every op can
    wait milliseconds for a sleeping thread, so run them on one (results do not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(layout: ChunkLayout, b: int, h: int, d: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = [
        (b, h, layout.num_query_tokens, d),
        (b, h, layout.num_key_tokens, d),
        (b, h, layout.num_key_tokens, d),
        (b, layout.num_query_tokens, h, d),
    ]
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_(True) for s in shapes]


@pytest.mark.parametrize(
    ("budget", "fast_mode", "heads"),
    [(None, False, 1), (1, True, 2)],
    ids=["full-jacobian", "row-by-row-fast"],
)
@pytest.mark.parametrize(
    ("layout", "sparsity"),
    [(ChunkLayout.full_sequence((2, 3), 4, 2), 0.5), (ChunkLayout.cached((2, 3), [2], 2), 0.6)],
    ids=["full", "cached"],
)
def test_gradcheck_float64(layout, sparsity, budget, fast_mode, heads, monkeypatch) -> None:
    if budget is not None:  # one query tile per batch: exercises the batching of the gather
        monkeypatch.setattr(fine, "GATHER_BUDGET_BYTES", budget)
    cfg = VSAConfig(enabled=True, sparsity=sparsity, tile=(1, 2, 2))  # partial tiles on 2x3
    q, k, v, gate = _inputs(layout, 1, heads, 2, torch.float64)
    _, sel = vsa_attention(q, k, v, gate, layout, cfg, return_selection=True)
    n_visible = layout.num_key_tokens  # the selection really drops tiles
    assert 0 < int(sel.token_mask()[0, 0].sum(-1).max()) < n_visible

    def fn(q, k, v, gate):
        return vsa_attention(q, k, v, gate, layout, cfg)

    assert torch.autograd.gradcheck(fn, (q, k, v, gate), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=fast_mode)


def test_gradients_match_masked_dense_reference() -> None:
    """fine + gate * coarse differentiated through VSA == through an explicit dense formula."""
    layout = ChunkLayout.full_sequence((5, 7), 9, 3, window_frames=6)
    cfg = VSAConfig(enabled=True, sparsity=0.7, tile=(2, 2, 3))
    q, k, v, gate = _inputs(layout, 2, 2, 8, torch.float64, seed=1)
    out, sel = vsa_attention(q, k, v, gate, layout, cfg, return_selection=True)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v, gate), upstream)

    qt, kt = sel.query_tiling, sel.key_tiling
    member_q = F.one_hot(qt.tile_of_token, qt.num_tiles).to(q.dtype)  # [Lq, Tq]
    member_k = F.one_hot(kt.tile_of_token, kt.num_tiles).to(q.dtype)  # [Lk, Tk]
    qc = (member_q.T @ q) / member_q.sum(0)[:, None]  # tile means [B, H, Tq, D]
    kc = (member_k.T @ k) / member_k.sum(0)[:, None]
    vc = (member_k.T @ v) / member_k.sum(0)[:, None]
    vis = torch.zeros(qt.num_tiles, kt.num_tiles, dtype=torch.bool)
    for i in range(qt.num_tiles):
        for j in range(kt.num_tiles):
            vis[i, j] = layout.visible[int(qt.tile_chunk[i])][int(kt.tile_chunk[j])]
    coarse = (
        torch.softmax((qc @ kc.transpose(-1, -2)) / 8**0.5 + torch.where(vis, 0.0, float("-inf")), -1) @ vc
    )
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=sel.token_mask())
    ref = ref + gate.permute(0, 2, 1, 3) * (member_q @ coarse)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    ref_grads = torch.autograd.grad(ref, (q, k, v, gate), upstream)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_gate_compress_gets_gradients_and_starts_at_zero() -> None:
    layout = ChunkLayout.cached((5, 7), [3], 3)
    dim, heads = 32, 4
    proj = make_gate_compress(dim)
    assert torch.count_nonzero(proj.weight) == 0 and torch.count_nonzero(proj.bias) == 0
    x = torch.randn(1, layout.num_query_tokens, dim)
    q, k, v, _ = _inputs(layout, 1, heads, dim // heads, torch.float32)
    cfg = VSAConfig(enabled=True, sparsity=0.5, tile=(2, 2, 3))
    out = vsa_attention(q, k, v, gate_heads(proj, x, heads), layout, cfg)
    out.square().sum().backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert proj.bias.grad is not None and proj.bias.grad.abs().sum() > 0
