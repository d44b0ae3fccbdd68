"""The CUDA path (compiled FlexAttention) against the pure-PyTorch reference.

Tolerances (max abs error, scaled by 1 + max |reference|): fp32 2e-3 (the compiled kernel may
use TF32 for its dot products and accumulates in a different order), bf16 2e-2 (bf16 keeps ~3
significant digits). The reference is computed on the same device with the same selection.
Selections are compared row by row with the CPU reference: fp32 rows may differ only where two
coarse logits tie to within rounding, so at least 99 % of rows must agree.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.sparse import ChunkLayout, VSAConfig, dense_attention, pool_chunk_kv, vsa_attention

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

GRID = (5, 7)
TILE = (2, 2, 3)
FP32_TOL = 2e-3
BF16_TOL = 2e-2


def _close(got: torch.Tensor, want: torch.Tensor, tol: float) -> bool:
    want = want.float()
    return (got.float() - want).abs().max().item() <= tol * (1.0 + want.abs().max().item())


def _qkv(layout: ChunkLayout, b: int, h: int, d: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, layout.num_query_tokens, d, generator=g)
    k = torch.randn(b, h, layout.num_key_tokens, d, generator=g)
    v = torch.randn(b, h, layout.num_key_tokens, d, generator=g)
    gate = torch.randn(b, layout.num_query_tokens, h, d, generator=g)
    return [t.to("cuda", dtype) for t in (q, k, v, gate)]


def _masked_reference(q, k, v, gate, layout, cfg, tile_mask_sel):
    """fine (dense SDPA under the selection's token mask) + gate * coarse from the torch path."""
    fine = F.scaled_dot_product_attention(q, k, v, attn_mask=tile_mask_sel.token_mask())
    coarse_only = vsa_attention(q, k, v, gate, layout, cfg, backend="torch") - vsa_attention(
        q, k, v, None, layout, cfg, backend="torch"
    )
    return fine + coarse_only


LAYOUTS = [
    ChunkLayout.cached(GRID, [3, 3, 3], 3, sink_chunks=1),
    ChunkLayout.full_sequence(GRID, 12, 3),
    ChunkLayout.full_sequence(GRID, 14, 3, window_frames=6, sink_chunks=1),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["cached", "full", "full-window-sink"])
def test_flex_matches_reference_fp32(layout) -> None:
    cfg = VSAConfig(enabled=True, sparsity=0.7, tile=TILE, include_sink=True)
    q, k, v, gate = _qkv(layout, 2, 4, 64, torch.float32)
    out, sel = vsa_attention(q, k, v, gate, layout, cfg, return_selection=True)  # auto -> flex
    ref = _masked_reference(q, k, v, gate, layout, cfg, sel)
    assert _close(out, ref, FP32_TOL)
    # selection agrees with the CPU reference path on (nearly) every row
    _, sel_cpu = vsa_attention(
        *(t.cpu() for t in (q, k, v, gate)), layout, cfg, backend="torch", return_selection=True
    )
    same_rows = (sel.tile_mask.cpu() == sel_cpu.tile_mask).all(-1).float().mean().item()
    assert same_rows >= 0.99


def test_flex_sparsity_zero_equals_dense_fp32() -> None:
    layout = ChunkLayout.full_sequence(GRID, 9, 3, window_frames=6)
    cfg = VSAConfig(enabled=True, sparsity=0.0, tile=(3, 5, 4))
    q, k, v, _ = _qkv(layout, 1, 2, 64, torch.float32)
    out = vsa_attention(q, k, v, torch.zeros_like(q).transpose(1, 2), layout, cfg)
    assert _close(out, dense_attention(q, k, v, layout), FP32_TOL)


def test_flex_bf16_wan_sized_chunk() -> None:
    """One Wan chunk (3 frames of 30x52) against 9 frames of keys, bf16, default tile."""
    layout = ChunkLayout.cached((30, 52), [3, 3], 3)
    cfg = VSAConfig(enabled=True, sparsity=0.9)
    q, k, v, gate = _qkv(layout, 1, 12, 128, torch.bfloat16)
    gate = gate * 0.1
    n_cached = 6 * 30 * 52
    pooled = pool_chunk_kv(k[:, :, :n_cached], v[:, :, :n_cached], (30, 52), (3, 3))
    out, sel = vsa_attention(q, k, v, gate, layout, cfg, pooled_kv=pooled, return_selection=True)
    assert out.shape == q.shape and out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert set(sel.selected_per_query_tile().unique().tolist()) == {24}  # ceil(0.1 * 234)
    ref = _masked_reference(q.float(), k.float(), v.float(), gate.float(), layout, cfg, sel)
    assert _close(out, ref, BF16_TOL)


@pytest.mark.parametrize("layout", LAYOUTS[1:], ids=["full", "full-window-sink"])
def test_flex_backward_matches_reference(layout) -> None:
    cfg = VSAConfig(enabled=True, sparsity=0.6, tile=TILE)
    q, k, v, gate = (t.requires_grad_(True) for t in _qkv(layout, 1, 2, 64, torch.float32, seed=2))
    out, sel = vsa_attention(q, k, v, gate, layout, cfg, return_selection=True)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v, gate), upstream)
    ref = _masked_reference(q, k, v, gate, layout, cfg, sel)
    ref_grads = torch.autograd.grad(ref, (q, k, v, gate), upstream)
    for got, want in zip(grads, ref_grads, strict=True):
        assert _close(got, want, FP32_TOL)


def test_flex_does_not_leak_from_future_chunks() -> None:
    layout = ChunkLayout.full_sequence(GRID, 12, 3)
    cfg = VSAConfig(enabled=True, sparsity=0.6, tile=TILE)
    q, k, v, gate = _qkv(layout, 1, 2, 64, torch.float32, seed=3)
    cut = 6 * layout.tokens_per_frame
    k2, v2 = k.clone(), v.clone()
    k2[:, :, cut:] += 10.0
    v2[:, :, cut:] -= 10.0
    out = vsa_attention(q, k, v, gate, layout, cfg)
    out2 = vsa_attention(q, k2, v2, gate, layout, cfg)
    assert torch.equal(out[:, :, :cut], out2[:, :, :cut])


def test_torch_backend_runs_on_cuda_too() -> None:
    layout = LAYOUTS[0]
    cfg = VSAConfig(enabled=True, sparsity=0.7, tile=TILE)
    q, k, v, gate = _qkv(layout, 1, 2, 64, torch.float32)
    out_t = vsa_attention(q, k, v, gate, layout, cfg, backend="torch")
    out_f = vsa_attention(q, k, v, gate, layout, cfg, backend="flex")
    assert _close(out_f, out_t, FP32_TOL)
