"""GPU fast path: the fine stage as one FlexAttention call with a block mask from the selection.

Each tile occupies one 64-slot kernel block (slot layout with `slot_size = 64`); empty slots of
partial tiles (and the 4 spare slots of Wan's 60-token tiles) are removed by a `mask_mod` on the
key side, and empty query slots are dropped after the call. The block mask lists, per query
block, exactly the selected key blocks (`BlockMask.from_kv_blocks`), so the kernel skips the
rest; on CUDA the call is compiled (`torch.compile(flex_attention)`), elsewhere it runs eagerly,
which materialises the scores and is only meant for testing this path on CPU (and has no
backward on CPU). The block mask's mask_mod repeats the selection, so eager and compiled runs
compute the same thing (see `selection_block_mask`).

Unlike the CPU path (a loop over query chunks), everything here is one batched call, also in
full-sequence mode: invisible tiles are masked to -inf before the coarse softmax and before the
top-K, and the per-row K differs by query chunk (`select_tiles_ragged`).

Compilation note: `dynamic=False`, so each distinct (query length, key length) pair compiles
once; a rolling cache reaches a steady shape after `window` chunks, training uses one shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import torch

from engine.sparse.plan import SelectionPlan, plan_tensor
from engine.sparse.select import coarse_attention, indices_to_mask, select_tiles_ragged
from engine.sparse.tiles import (
    MAX_TILE_TOKENS,
    Tiling,
    from_slots,
    pool_slots,
    pool_slots_after,
    tiling_tensor,
    to_slots,
)

BLOCK = MAX_TILE_TOKENS  # one tile = one kernel block


@functools.cache
def _flex_fn(compiled: bool) -> Callable[..., Any]:
    from torch.nn.attention.flex_attention import flex_attention

    if not compiled:
        return flex_attention
    return cast(Callable[..., Any], torch.compile(flex_attention, dynamic=False))


def selection_block_mask(
    idx: torch.Tensor,  # [B, H, Tq, Kmax] selected key tiles, ascending, padded with Tk
    counts: torch.Tensor,  # [Tq] valid entries per row
    key_tiling: Tiling,  # slot_size 64
    tile_mask: torch.Tensor,  # [B, H, Tq, Tk] the same selection as a mask
) -> Any:
    """The FlexAttention `BlockMask` (64-token blocks) listing exactly the selected key tiles.

    Compiled kernels visit only the listed blocks. The mask_mod nevertheless repeats the
    selection (plus the empty-slot mask): the eager (math) implementation ignores the block
    lists, and torch.compile falls back to it (e.g. past its recompile limit), so a mask_mod
    that only dropped empty slots would silently turn the call dense and non-causal there.
    Inside a block the extra lookup reads one cached byte, a small cost for that safety.
    """
    from torch.nn.attention.flex_attention import BlockMask

    b, h, tq, kmax = idx.shape
    tk, dev = key_tiling.num_tiles, idx.device
    kv_indices = torch.zeros(b, h, tq, tk, dtype=torch.int32, device=dev)
    kv_indices[..., :kmax] = torch.where(idx < tk, idx, torch.zeros_like(idx)).to(torch.int32)
    kv_num_blocks = counts.to(device=dev, dtype=torch.int32).view(1, 1, tq).expand(b, h, tq).contiguous()
    valid = None if key_tiling.is_full else tiling_tensor(key_tiling, "slot_valid", dev)
    return BlockMask.from_kv_blocks(
        kv_num_blocks,
        kv_indices,
        BLOCK_SIZE=BLOCK,
        mask_mod=_selection_mask(tile_mask, valid),
        seq_lengths=(tq * BLOCK, tk * BLOCK),
    )


def _selection_mask(tile_mask: torch.Tensor, valid: torch.Tensor | None) -> Callable[..., torch.Tensor]:
    if valid is None:

        def selected(
            b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
        ) -> torch.Tensor:
            return tile_mask[b, h, q_idx // BLOCK, kv_idx // BLOCK]

        return selected

    def selected_real(
        b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
    ) -> torch.Tensor:
        return tile_mask[b, h, q_idx // BLOCK, kv_idx // BLOCK] & valid[kv_idx]

    return selected_real


def flex_fine_and_coarse(
    q: torch.Tensor,  # [B, H, Lq, D]
    k: torch.Tensor,  # [B, H, Lk, D]
    v: torch.Tensor,  # [B, H, Lk, D]
    plan: SelectionPlan,  # built with slot_size = 64
    scale: float,
    pooled_kv: tuple[torch.Tensor, torch.Tensor] | None,
    want_mask: bool,
    compiled: bool | None = None,  # default: compiled on CUDA, eager elsewhere
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Returns (fine [B, H, Lq, D], coarse [B, H, Tq, D], selected tile mask [B, H, Tq, Tk] or None)."""
    qt, kt = plan.query_tiling, plan.key_tiling
    if qt.slot_size != BLOCK or kt.slot_size != BLOCK:
        raise ValueError("the flex path needs a plan built with slot_size=64")
    b, h, _, d = q.shape
    dev = q.device
    qs, ks, vs = to_slots(q, qt), to_slots(k, kt), to_slots(v, kt)  # [B, H, T, 64, D]
    pk, pv = (None, None) if pooled_kv is None else pooled_kv
    qc = pool_slots(qs, qt)  # [B, H, Tq, D]
    kc, vc = pool_slots_after(ks, kt, pk), pool_slots_after(vs, kt, pv)  # [B, H, Tk, D]
    all_visible = all(c.key_tiles is None for c in plan.chunks)
    visible = None if all_visible else plan_tensor(plan, "visible", dev)
    coarse, logits = coarse_attention(qc, kc, vc, scale, visible)
    counts = plan_tensor(plan, "counts", dev)
    assert counts is not None
    idx = select_tiles_ragged(logits, counts, plan_tensor(plan, "forced", dev))  # [B, H, Tq, Kmax]
    use_compiled = dev.type == "cuda" if compiled is None else compiled
    tile_mask = indices_to_mask(idx, kt.num_tiles)  # [B, H, Tq, Tk]
    block_mask = selection_block_mask(idx, counts, kt, tile_mask)
    tq, tk = qt.num_tiles, kt.num_tiles
    out = _flex_fn(use_compiled)(
        qs.reshape(b, h, tq * BLOCK, d),
        ks.reshape(b, h, tk * BLOCK, d),
        vs.reshape(b, h, tk * BLOCK, d),
        block_mask=block_mask,
        scale=scale,
    )  # [B, H, Tq*64, D]
    return from_slots(out, qt), coarse, tile_mask if want_mask else None
