"""Self-attention (block-causal, KV-cached) and text cross-attention of the Wan DiT.

Parameter names (q, k, v, o, norm_q, norm_k) are those of the public checkpoints. q and k are
RMS-normalised over the full model dim before the head split; RoPE rotates q and k of
self-attention only. Cross-attention attends to every text row, padding included (the
reference passes no mask).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.kv_cache import KVCache, WritePlan
from engine.model.layers import RMSNorm
from engine.model.rope import apply_rope
from engine.sparse import ChunkLayout, VSAConfig, gate_heads, make_gate_compress, vsa_attention

# (q, k, v [B, L, H, D], token mask or None, chunk layout or None) -> [B, Lq, H, D]
AttendFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, "ChunkLayout | None"], torch.Tensor
]


def dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax attention, q [B, Lq, H, D], k/v [B, Lk, H, D] -> [B, Lq, H, D]; scale 1/sqrt(D).

    `mask` (bool, True = attend) broadcasts to [B, H, Lq, Lk]. Runs in the inputs' dtype through
    SDPA (flash / memory-efficient kernels on CUDA, exact math on CPU) -- except under CPU
    autocast (bf16 mixed-precision training), see `_cpu_bf16_attention`.
    """
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return _cpu_bf16_attention(q, k, v, mask)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )
    return out.transpose(1, 2)


def _cpu_bf16_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """The training fast path on CPU: matmul -> softmax -> matmul, all in bf16.

    PyTorch's CPU flash-attention kernel in bf16 is slower (forward + backward) than these three
    plain ops for the tiny model's shapes (8 x 3 heads x 384 tokens x 64: ~26 ms vs ~16 ms on 2
    cores), and bf16 matmuls are 2.5-5x faster than fp32 ones on CPUs with AVX512-BF16. An fp32
    softmax would cost twice as much and buys nothing here: the error against float64 (~1 %
    of the largest output) comes from rounding q, k, v and the output to bf16, not from the
    softmax (tests/engine/test_attention_bf16.py). The scale goes on q, the smallest operand.
    """
    qh, kh, vh = (t.transpose(1, 2).to(torch.bfloat16) for t in (q, k, v))  # [B, H, L, D]
    scores = (qh * q.shape[-1] ** -0.5) @ kh.transpose(-1, -2)  # [B, H, Lq, Lk]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(dim=-1) @ vh).transpose(1, 2)


@dataclass
class CacheBinding:
    """One stream group's cache and this call's write plan (several per batched call).

    layout: the chunk structure of the attended keys, for sparse attention (None: dense).
    """

    cache: KVCache
    plan: WritePlan
    layout: ChunkLayout | None = None


@dataclass
class AttentionContext:
    """Per-call inputs shared by every layer's self-attention.

    rotation: [B, L, D/2] complex128 RoPE rotations of the call's tokens.
    bindings: None for a full-sequence (training) pass, else one entry per cache; the batch is
      split across them in order (entry i covers `bindings[i].cache.batch` rows).
    mask: bool [Lq, Lk] block-causal mask for a full-sequence pass.
    """

    rotation: torch.Tensor
    bindings: Sequence[CacheBinding] | None = None
    mask: torch.Tensor | None = None
    layout: ChunkLayout | None = None  # full-sequence chunk structure for sparse attention
    sparsity: float | None = None  # override of the configured sparsity (training ramp)


class _AttentionProjections(nn.Module):
    """The q, k, v, o projections and q/k RMS norms shared by both attention kinds."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q: nn.Module = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k: nn.Module = RMSNorm(dim, eps) if qk_norm else nn.Identity()


class SelfAttention(_AttentionProjections):
    """Self-attention over the call's tokens (full sequence) or the KV cache (generation).

    With `sparse` enabled it runs VSA (engine.sparse): coarse tile attention + exact attention
    over the top-K key tiles, gated by `gate_compress` (zero-initialised: a dense checkpoint
    behaves exactly as before until fine-tuned).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qk_norm: bool = True,
        eps: float = 1e-6,
        sparse: VSAConfig | None = None,
    ) -> None:
        super().__init__(dim, num_heads, qk_norm, eps)
        self.sparse = sparse if sparse is not None and sparse.enabled else None
        if self.sparse is not None:
            self.gate_compress = make_gate_compress(dim)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, length, _ = x.shape
        shape = (b, length, self.num_heads, self.head_dim)
        q = self.norm_q(self.q(x)).view(shape)
        k = self.norm_k(self.k(x)).view(shape)
        v = self.v(x).view(shape)
        return q, k, v

    def forward(self, x: torch.Tensor, layer: int, ctx: AttentionContext) -> torch.Tensor:
        """x [B, L, dim] (modulated, normed) -> [B, L, dim]."""
        q, k_raw, v = self.qkv(x)
        q = apply_rope(q, ctx.rotation)
        k = apply_rope(k_raw, ctx.rotation)
        attend = self._attend_fn(x, layer, ctx)
        if ctx.bindings is None:
            out = attend(q, k, v, ctx.mask, ctx.layout)
        else:
            out = self._cached(q, k, v, k_raw, layer, ctx.bindings, attend)
        return self.o(out.flatten(2))

    def _attend_fn(self, x: torch.Tensor, layer: int, ctx: AttentionContext) -> AttendFn:
        """Dense attention, or VSA with this call's gate when sparse attention is on."""
        if self.sparse is None:
            return lambda q, k, v, mask, layout: dense_attention(q, k, v, mask)
        sparse = self.sparse
        gate = gate_heads(self.gate_compress, x, self.num_heads)  # [B, L, H, D]
        row = 0

        def attend(
            q: torch.Tensor,
            k: torch.Tensor,
            v: torch.Tensor,
            mask: torch.Tensor | None,
            layout: ChunkLayout | None,
        ) -> torch.Tensor:
            nonlocal row
            if layout is None:
                raise ValueError("sparse attention needs the chunk layout of the call")
            g = gate[row : row + q.shape[0]]
            row += q.shape[0]
            out = vsa_attention(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                g,
                layout,
                sparse,
                layer=layer,
                sparsity=ctx.sparsity,
            )
            return out.transpose(1, 2)

        return attend

    @staticmethod
    def _cached(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_raw: torch.Tensor,
        layer: int,
        bindings: Sequence[CacheBinding],
        attend: AttendFn,
    ) -> torch.Tensor:
        outs = []
        row = 0
        for binding in bindings:
            cache, plan = binding.cache, binding.plan
            rows = slice(row, row + cache.batch)
            row += cache.batch
            if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
                # Training rollout: keep the graph on this call's own K/V; the cached context
                # (written by earlier no-grad calls) enters as a constant.
                cache.write(layer, plan, k[rows].detach(), v[rows].detach(), k_raw[rows].detach())
                k_all = torch.cat([cache.k[layer][:, plan.attend_start : plan.start], k[rows]], dim=1)
                v_all = torch.cat([cache.v[layer][:, plan.attend_start : plan.start], v[rows]], dim=1)
            else:
                cache.write(layer, plan, k[rows], v[rows], k_raw[rows])
                k_all, v_all = cache.keys(layer, plan), cache.values(layer, plan)
            outs.append(attend(q[rows], k_all, v_all, None, binding.layout))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)


class CrossAttention(_AttentionProjections):
    """Attention of video tokens to the prompt; K/V of a prompt are computed once and reused."""

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context [B, Lt, dim] (after the text embedding MLP) -> k, v [B, Lt, H, D]."""
        b, length, _ = context.shape
        shape = (b, length, self.num_heads, self.head_dim)
        return self.norm_k(self.k(context)).view(shape), self.v(context).view(shape)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, length, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, length, self.num_heads, self.head_dim)
        return self.o(dense_attention(q, *kv).flatten(2))
