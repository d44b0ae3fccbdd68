"""Trainable block-sparse video attention (VSA) for the causal, KV-cached DiT.

What it computes (per batch element and head)::

    tiles    = (3, 5, 4) boxes of tokens inside each chunk (`tiles.py`, partial at grid edges)
    coarse   = softmax(mean(q) mean(k)^T / sqrt(D)) mean(v)      over tiles, masked if invisible
    selected = per query tile: forced tiles + top-K key tiles by coarse logit,
               K = max(1, ceil((1 - sparsity) * visible key tiles))
    fine     = exact softmax attention of each query token over the tokens of its tile's
               selected key tiles
    out      = fine + gate * coarse(broadcast to the query tile's tokens)

With the gate at zero and sparsity 0 the output is dense attention (to rounding).

Integration into the DiT self-attention (the lead's part)::

    from engine.sparse import ChunkLayout, VSAConfig, gate_heads, make_gate_compress,
                              pool_chunk_kv, vsa_attention

    # __init__ of the self-attention block (parameter `blocks.N.self_attn.gate_compress`):
    self.gate_compress = make_gate_compress(dim)              # nn.Linear(dim, dim), zeros

    # forward, x: [B, L, dim] block input; q, k, v: [B, H, L, D] after RMSNorm + RoPE
    gate = gate_heads(self.gate_compress, x, num_heads)        # [B, L, H, D]

    # generation: the current chunk against cached chunks + itself (the current chunk's K/V
    # are the last key chunk). cached_frames: frames per cached chunk, oldest first.
    layout = ChunkLayout.cached(grid, cached_frames, chunk_frames=3, sink_chunks=n_sink_chunks)
    out = vsa_attention(q, k_all, v_all, gate, layout, cfg, layer=i,
                        pooled_kv=(kc_cached, vc_cached))      # [B, H, Lq, D]

    # the cache keeps tile means beside K/V: after the t=0 refresh of a chunk,
    kc, vc = pool_chunk_kv(k_chunk, v_chunk, grid, 3, cfg.tile)  # [B, H, 78, D] each for Wan
    # store with the chunk, evict with the chunk; pooled_kv = concatenation over cached chunks.

    # training: all F frames at once, block-causal (optionally windowed)
    layout = ChunkLayout.full_sequence(grid, F, chunk_frames=3, window_frames=W, sink_chunks=s)
    out = vsa_attention(q, k, v, gate, layout, cfg, layer=i, sparsity=sparsity_at(step, cfg, i))

The t=0 cache-refresh pass is an ordinary call with the same layout and the same rule. With
`cfg.enabled` False, `vsa_attention` is dense attention under the layout's mask (gate ignored).
On CUDA the fine stage runs as a compiled FlexAttention with a block mask built from the
selection; elsewhere the selected tiles are gathered and attended to with SDPA (matmuls under
autograd): pure PyTorch, exact, differentiable. Pooled means must match the keys passed: if the
cache re-rotates keys (RoPE window mode), recompute or re-rotate their means (docs/models.md).
"""

from engine.sparse.attention import (
    chunk_token_mask,
    dense_attention,
    gate_heads,
    make_gate_compress,
    pool_chunk_kv,
    vsa_attention,
)
from engine.sparse.config import VSAConfig, num_selected, sparsity_at
from engine.sparse.fine import release_workspace
from engine.sparse.layout import ChunkLayout
from engine.sparse.select import VSASelection
from engine.sparse.tiles import (
    DEFAULT_TILE,
    Tiling,
    build_tiling,
    from_slots,
    pool_tiles,
    tile_stats,
    to_slots,
)

__all__ = [
    "DEFAULT_TILE",
    "ChunkLayout",
    "Tiling",
    "VSAConfig",
    "VSASelection",
    "build_tiling",
    "chunk_token_mask",
    "dense_attention",
    "from_slots",
    "gate_heads",
    "make_gate_compress",
    "num_selected",
    "pool_chunk_kv",
    "pool_tiles",
    "release_workspace",
    "sparsity_at",
    "tile_stats",
    "to_slots",
    "vsa_attention",
]
