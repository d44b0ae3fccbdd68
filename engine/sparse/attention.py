"""VSA attention: coarse tile attention + exact attention over the top-K key tiles, gated.

    out = fine + gate * coarse

* coarse: attention between tile means (q, k, v mean-pooled over the real tokens of each
  tile), broadcast back to every token of the query tile;
* fine: exact softmax attention of each query tile over its selected key tiles only;
* gate: `gate_compress(x)` (a zero-initialised `nn.Linear(dim, dim)` on the attention block's
  input), viewed per head as [B, L, H, D]. Zero gate + sparsity 0 = dense attention.

Backends behind the same call: "torch" (pure PyTorch, exact, the CPU default, differentiable)
and "flex" (FlexAttention with a block mask built from the selection; the CUDA default).
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import nn

from engine.sparse.config import VSAConfig
from engine.sparse.fine import gathered_attention
from engine.sparse.layout import ChunkLayout
from engine.sparse.plan import SelectionPlan, selection_plan
from engine.sparse.select import VSASelection, coarse_attention, indices_to_mask, select_tiles
from engine.sparse.tiles import (
    DEFAULT_TILE,
    MAX_TILE_TOKENS,
    TileShape,
    build_tiling,
    from_slots,
    pool_slots,
    pool_tiles_after,
    tiling_tensor,
    to_slots,
)

Backend = Literal["auto", "torch", "flex"]


def make_gate_compress(dim: int) -> nn.Linear:
    """The per-token, per-channel gate projection, zero-initialised (a dense checkpoint loads
    unchanged and the coarse branch starts switched off)."""
    gate = nn.Linear(dim, dim)
    nn.init.zeros_(gate.weight)
    nn.init.zeros_(gate.bias)
    return gate


def gate_heads(gate_compress: nn.Module, x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """`gate_compress(x)` for x [B, L, dim], viewed per head: [B, L, H, dim // H]."""
    g = gate_compress(x)
    return g.view(g.shape[0], g.shape[1], num_heads, g.shape[2] // num_heads)


def pool_chunk_kv(
    k: torch.Tensor,  # [B, H, L, D] keys of one or more whole chunks (token order)
    v: torch.Tensor,  # [B, H, L, D]
    grid: tuple[int, int],
    chunk_frames: int | tuple[int, ...] = 3,
    tile: TileShape = DEFAULT_TILE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tile means [B, H, T, D] of cached keys and values, to keep beside the KV cache.

    Compute once when a chunk's clean K/V enter the cache (the t=0 refresh), evict together
    with the chunk, and pass the concatenation over the cached chunks (oldest first, dim 2) as
    `pooled_kv`. Valid only while the cached K/V are not modified (e.g. not re-rotated).
    """
    frames = (chunk_frames,) if isinstance(chunk_frames, int) else tuple(chunk_frames)
    tiling = build_tiling(frames, grid, tile)
    return pool_slots(to_slots(k, tiling), tiling), pool_slots(to_slots(v, tiling), tiling)


def chunk_token_mask(layout: ChunkLayout, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """[Lq, Lk] bool token mask of the layout's chunk visibility (None: everything visible)."""
    if all(all(row) for row in layout.visible):
        return None
    n = layout.tokens_per_frame
    q_sizes, k_sizes = torch.tensor(layout.query_frames) * n, torch.tensor(layout.key_frames) * n
    q_chunk = torch.repeat_interleave(torch.arange(len(q_sizes)), q_sizes)  # [Lq]
    k_chunk = torch.repeat_interleave(torch.arange(len(k_sizes)), k_sizes)  # [Lk]
    vis = torch.tensor(layout.visible, dtype=torch.bool)
    return vis[q_chunk][:, k_chunk].to(device)


def dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: ChunkLayout, scale: float | None = None
) -> torch.Tensor:
    """Dense reference under the layout's (block-causal / windowed) chunk mask. [B, H, Lq, D]."""
    mask = chunk_token_mask(layout, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def _torch_fine_and_coarse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: SelectionPlan,
    scale: float,
    pooled_kv: tuple[torch.Tensor, torch.Tensor] | None,
    want_mask: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Reference path, one query chunk at a time over exactly its visible key tiles (so a
    full-sequence call does per chunk the very computation a cached call does).

    Keys and values are never copied as a whole up front: tile means come from the
    precomputed prefix plus the remaining chunks, and the fine stage reads K/V head by head.
    """
    kt = plan.key_tiling
    dev = q.device
    pk, pv = (None, None) if pooled_kv is None else pooled_kv
    kc, vc = pool_tiles_after(k, kt, pk), pool_tiles_after(v, kt, pv)  # [B, H, Tk, D]
    slot_tokens = tiling_tensor(kt, "gather_index", dev).view(kt.num_tiles, kt.slot_size)
    valid = None if kt.is_full else tiling_tensor(kt, "slot_valid", dev).view(kt.num_tiles, kt.slot_size)
    fines, coarses, masks = [], [], []
    for cp in plan.chunks:
        q_i = q[:, :, cp.query_tokens]
        qs = to_slots(q_i, cp.tiling)  # [B, H, tq_i, S, D]
        key_tiles = None if cp.key_tiles is None else cp.key_tiles.to(dev)
        kc_i = kc if key_tiles is None else kc.index_select(2, key_tiles)
        vc_i = vc if key_tiles is None else vc.index_select(2, key_tiles)
        coarse, logits = coarse_attention(pool_slots(qs, cp.tiling), kc_i, vc_i, scale)
        coarses.append(coarse)
        sel = None
        if cp.count == cp.num_visible:  # everything visible is selected: plain attention
            key_tokens = None if cp.key_tokens is None else cp.key_tokens.to(dev)
            k_i = k if key_tokens is None else k.index_select(2, key_tokens)
            v_i = v if key_tokens is None else v.index_select(2, key_tokens)
            fines.append(F.scaled_dot_product_attention(q_i, k_i, v_i, scale=scale))
        else:
            forced = None if cp.forced is None else cp.forced.to(dev)
            sel = select_tiles(logits, cp.count, forced)  # [B, H, tq_i, K] into the visible set
            if key_tiles is not None:
                sel = key_tiles[sel]  # -> global key tiles
            fine = gathered_attention(qs, k, v, slot_tokens, valid, sel, scale)
            fines.append(from_slots(fine, cp.tiling))
        if want_mask:
            if sel is None:
                m = torch.zeros(*logits.shape[:-1], kt.num_tiles, dtype=torch.bool, device=dev)
                m[..., slice(None) if key_tiles is None else key_tiles] = True
            else:
                m = indices_to_mask(sel, kt.num_tiles)
            masks.append(m)
    fine_tokens = fines[0] if len(fines) == 1 else torch.cat(fines, dim=2)  # [B, H, Lq, D]
    coarse_tiles = coarses[0] if len(coarses) == 1 else torch.cat(coarses, dim=2)  # [B, H, Tq, D]
    mask = torch.cat(masks, dim=2) if want_mask else None
    return fine_tokens, coarse_tiles, mask


def _check_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate: torch.Tensor | None, layout: ChunkLayout
) -> None:
    if q.dim() != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        shapes = f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        raise ValueError(f"q, k, v must be [B, H, L, D] with equal B, H, D; got {shapes}")
    if q.shape[2] != layout.num_query_tokens or k.shape[2] != layout.num_key_tokens:
        raise ValueError(
            f"layout expects {layout.num_query_tokens} query / {layout.num_key_tokens} key tokens, "
            f"got {q.shape[2]} / {k.shape[2]}"
        )
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    b, h, lq, d = q.shape
    if gate is not None and tuple(gate.shape) != (b, lq, h, d):
        raise ValueError(f"gate must be [B, Lq, H, D] = {(b, lq, h, d)}, got {tuple(gate.shape)}")


@overload
def vsa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate: torch.Tensor | None, layout: ChunkLayout,
    config: VSAConfig, *, layer: int | None = ..., sparsity: float | None = ...,
    pooled_kv: tuple[torch.Tensor, torch.Tensor] | None = ..., scale: float | None = ...,
    backend: Backend = ..., return_selection: Literal[False] = ...,
) -> torch.Tensor: ...  # fmt: skip
@overload
def vsa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate: torch.Tensor | None, layout: ChunkLayout,
    config: VSAConfig, *, layer: int | None = ..., sparsity: float | None = ...,
    pooled_kv: tuple[torch.Tensor, torch.Tensor] | None = ..., scale: float | None = ...,
    backend: Backend = ..., return_selection: Literal[True],
) -> tuple[torch.Tensor, VSASelection]: ...  # fmt: skip
def vsa_attention(
    q: torch.Tensor,  # [B, H, Lq, D] queries (after RoPE)
    k: torch.Tensor,  # [B, H, Lk, D] keys (after RoPE), key chunks of `layout` in order
    v: torch.Tensor,  # [B, H, Lk, D]
    gate: torch.Tensor | None,  # [B, Lq, H, D] = gate_heads(gate_compress, x, H); None = no coarse
    layout: ChunkLayout,
    config: VSAConfig,
    *,
    layer: int | None = None,  # picks config.layer_sparsity[layer] if set
    sparsity: float | None = None,  # explicit override (e.g. sparsity_at(step, config, layer))
    pooled_kv: tuple[torch.Tensor, torch.Tensor] | None = None,  # tile means of leading key chunks
    scale: float | None = None,  # default 1 / sqrt(D)
    backend: Backend = "auto",  # auto: "flex" on CUDA, "torch" elsewhere
    return_selection: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, VSASelection]:
    """Block-sparse attention of `layout`'s query chunks over its key chunks. Returns [B, H, Lq, D].

    With `config.enabled` False this is dense attention under the layout's chunk mask and the
    gate is ignored (a disabled model behaves exactly like the dense checkpoint).
    """
    _check_inputs(q, k, v, gate, layout)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not config.enabled:
        if return_selection:
            raise ValueError("return_selection needs config.enabled")
        return dense_attention(q, k, v, layout, scale)
    s = config.target(layer) if sparsity is None else float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {s}")
    if backend == "auto":
        backend = "flex" if q.is_cuda else "torch"
    if backend == "flex":
        from engine.sparse.flex import flex_fine_and_coarse

        plan = selection_plan(
            layout, config.tile, s, config.include_own_chunk, config.include_sink, MAX_TILE_TOKENS
        )
        fine, coarse, mask = flex_fine_and_coarse(q, k, v, plan, scale, pooled_kv, return_selection)
    elif backend == "torch":
        plan = selection_plan(layout, config.tile, s, config.include_own_chunk, config.include_sink)
        fine, coarse, mask = _torch_fine_and_coarse(q, k, v, plan, scale, pooled_kv, return_selection)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    out = fine
    if gate is not None:
        tile_of_token = tiling_tensor(plan.query_tiling, "tile_of_token", q.device)
        coarse_tokens = coarse.index_select(2, tile_of_token)  # [B, H, Lq, D]
        g = gate.permute(0, 2, 1, 3).to(fine.dtype)  # [B, H, Lq, D]
        out = torch.addcmul(fine, g, coarse_tokens)  # fine + gate * coarse
    if not return_selection:
        return out
    assert mask is not None
    # report against the tight (slot_size = volume) tilings: same tiles, same token maps
    selection = VSASelection(
        tile_mask=mask,
        query_tiling=layout.query_tiling(config.tile),
        key_tiling=layout.key_tiling(config.tile),
    )
    return out, selection
