"""The bf16 CPU fast paths used by mixed-precision training, against the fp32 reference:
dense attention (bf16 matmuls and softmax instead of SDPA) and RoPE (complex64 instead of
complex128) under CPU autocast."""

from __future__ import annotations

import torch

from engine.model.attention import dense_attention
from engine.model.rope import apply_rope, rope_angles, rope_rotation


def _qkv(seed: int, lq: int = 48, lk: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, lq, 3, 32, generator=g)
    k = torch.randn(2, lk, 3, 32, generator=g)
    v = torch.randn(2, lk, 3, 32, generator=g)
    return q, k, v


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def test_autocast_attention_matches_fp32_within_bf16_rounding() -> None:
    q, k, v = _qkv(0)
    want = dense_attention(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = dense_attention(q, k, v)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    # bf16 keeps 8 bits of mantissa: ~0.4 % per rounding, a few roundings deep
    assert _rel(got, want) < 3e-2
    assert _rel(got, want) > 0  # it did take the bf16 path


def test_autocast_attention_respects_the_mask() -> None:
    q, k, v = _qkv(1, lq=64, lk=64)
    mask = torch.ones(64, 64, dtype=torch.bool).tril()  # causal
    want = dense_attention(q, k, v, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = dense_attention(q, k, v, mask)
    assert _rel(got, want) < 3e-2
    # the first query sees only the first key: its output is that key's value (to bf16 rounding)
    torch.testing.assert_close(got[:, 0].float(), v[:, 0], atol=2e-2, rtol=2e-2)


def test_autocast_attention_gradients_match_fp32() -> None:
    q, k, v = (t.requires_grad_() for t in _qkv(2))
    dense_attention(q, k, v).square().sum().backward()
    want = [t.grad.clone() for t in (q, k, v)]  # type: ignore[union-attr]
    for t in (q, k, v):
        t.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dense_attention(q, k, v)
    out.float().square().sum().backward()
    for t, w in zip((q, k, v), want, strict=True):
        assert _rel(t.grad, w) < 5e-2  # type: ignore[arg-type]


def test_autocast_rope_matches_the_exact_rotation() -> None:
    x = torch.randn(2, 3 * 4 * 5, 2, 32)
    rotation = rope_rotation(rope_angles(32, torch.arange(7, 10), 4, 5)).unsqueeze(0)
    want = apply_rope(x, rotation)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = apply_rope(x, rotation)
    assert got.dtype == x.dtype
    assert 0 < _rel(got, want) < 1e-5  # complex64 instead of complex128: float32 rounding only
