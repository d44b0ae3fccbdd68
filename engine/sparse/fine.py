"""Fine stage on CPU: exact softmax attention of each query tile over its selected key tiles.

Only the selected tiles are touched. For a batch of query tiles, the selected key/value tiles
are gathered into contiguous [rows, K*S, D] buffers and attended to (SDPA without autograd,
matmul + softmax + matmul with it). A dense attention under a token mask would cost as much as
dense attention; this costs K/Tk of it plus the gather.

Keys and values may be strided views (e.g. a [B, L, H, D] KV cache transposed to [B, H, L, D]):
without autograd they are read per head by `index_select`, never copied as a whole.

Batches of up to `GATHER_BUDGET_BYTES` of gathered K/V (320 MB: one batch per head for a Wan
chunk at sparsity 0.9) keep the number of operator calls low: every call is an OpenMP parallel
region, and on a loaded 2-core machine each region can wait a scheduler time slice for a
descheduled thread. Measured on the shared box under load (one Wan chunk at sparsity 0.9,
interleaved runs, medians): batches of 64 MB 5.2 s, 128 MB 4.1 s, 280 MB 3.6 s, dense SDPA
14.2 s. Without autograd the scratch buffers come from a per-thread workspace reused across
calls (`release_workspace()` frees it; ~300 MB at Wan size, kilobytes for the tiny model).
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

GATHER_BUDGET_BYTES = 320 << 20

_local = threading.local()


def _workspace(numel: int, like: torch.Tensor) -> torch.Tensor:
    """A flat scratch buffer of at least `numel` elements, kept per (thread, device, dtype) and
    reused across calls: buffers of this size are otherwise fresh pages on every call (measured
    ~135 ms of page faults per call for 264 MB). Grows, never shrinks; `release_workspace()`
    frees it. Created outside inference mode so that it can be written in any mode."""
    key = (like.device, like.dtype)
    buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = _local.__dict__.setdefault("buffers", {})
    buf = buffers.get(key)
    if buf is None or buf.numel() < numel:
        buffers.pop(key, None)
        with torch.inference_mode(False):
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
        buffers[key] = buf
    return buf[:numel]


def release_workspace() -> None:
    """Free this thread's scratch buffers of the CPU fine stage."""
    _local.__dict__.pop("buffers", None)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _token_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows [B*H*L, D] of x [B, H, L, D] (a contiguous copy if needed): row of (b, h, token) is
    (b * H + h) * L + token."""
    b, h, length, d = x.shape
    return x.contiguous().view(b * h * length, d)


def gathered_attention(
    q: torch.Tensor,  # [B, H, Tq, S, D] query slots (of the query tiles)
    k: torch.Tensor,  # [B, H, Lk, D] keys, token order
    v: torch.Tensor,  # [B, H, Lk, D] values, token order
    slot_tokens: torch.Tensor,  # [Tk, S] key token of each slot of each key tile (any if empty)
    key_valid: torch.Tensor | None,  # [Tk, S] bool, None when every slot holds a real token
    sel: torch.Tensor,  # [B, H, Tq, K] selected key tiles per query tile
    scale: float,
    budget_bytes: int | None = None,  # default: GATHER_BUDGET_BYTES (read at call time)
) -> torch.Tensor:
    """Exact attention restricted to the selected tiles. Returns [B, H, Tq, S, D].

    Empty query slots produce finite values that the caller drops; empty key slots get -inf.
    """
    budget_bytes = GATHER_BUDGET_BYTES if budget_bytes is None else budget_bytes
    if _needs_grad(q, k, v):
        return _gathered_autograd(q, k, v, slot_tokens, key_valid, sel, scale, budget_bytes)
    return _gathered_inference(q, k, v, slot_tokens, key_valid, sel, scale, budget_bytes)


def _batch_rows(width: int, d: int, itemsize: int, budget_bytes: int, rows: int) -> int:
    """Rows per batch: as many as the budget allows, split evenly (78 rows with room for 75
    become 2 x 39, not 75 + 3)."""
    most = max(1, min(rows, budget_bytes // (width * d * itemsize * 2)))
    batches = -(-rows // most)
    return -(-rows // batches)


def _mask_bias(key_valid: torch.Tensor, tiles: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """[n, 1, K*S] additive bias: 0 for real key slots of the given tiles, -inf for empty ones."""
    ok = key_valid.index_select(0, tiles).view(n, 1, -1)
    return torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill_(~ok, float("-inf"))


def _gathered_inference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slot_tokens: torch.Tensor,
    key_valid: torch.Tensor | None,
    sel: torch.Tensor,
    scale: float,
    budget_bytes: int,
) -> torch.Tensor:
    """No autograd. Per (batch, head): K/V are first put in tile order in a reused buffer (one
    sequential pass), so that the per-query-tile gathers copy whole contiguous tiles from a
    cache-sized source; then each batch of query tiles is one SDPA call over its gathered
    tiles ([n, 1, S, D] queries against [n, 1, K*S, D] keys: flash kernel, no score buffers)."""
    b, h, tq, s, d = q.shape
    tk, kk = slot_tokens.shape[0], sel.shape[-1]
    width = kk * s
    step = _batch_rows(width, d, k.element_size(), budget_bytes, tq)
    order = slot_tokens.reshape(-1)  # [Tk*S] token per slot
    pieces: list[torch.Tensor] = []  # SDPA outputs, concatenated once at the end
    n_tiles, n_buf = tk * s * d, step * kk * s * d
    space = _workspace(2 * (n_tiles + n_buf), k)
    k_tiles = space[:n_tiles].view(tk * s, d)  # one head's keys in tile order
    v_tiles = space[n_tiles : 2 * n_tiles].view(tk * s, d)
    k_buf = space[2 * n_tiles : 2 * n_tiles + n_buf].view(step * kk, s, d)  # gathered tiles of a batch
    v_buf = space[2 * n_tiles + n_buf :].view(step * kk, s, d)
    for bi in range(b):
        for hi in range(h):
            torch.index_select(k[bi, hi], 0, order, out=k_tiles)
            torch.index_select(v[bi, hi], 0, order, out=v_tiles)
            for start in range(0, tq, step):
                stop = min(tq, start + step)
                n = stop - start
                tiles = sel[bi, hi, start:stop].reshape(-1)  # [n*K]
                kg = torch.index_select(k_tiles.view(tk, s, d), 0, tiles, out=k_buf[: n * kk])
                vg = torch.index_select(v_tiles.view(tk, s, d), 0, tiles, out=v_buf[: n * kk])
                mask = None
                if key_valid is not None:
                    mask = _mask_bias(key_valid, tiles, n, q.dtype).view(n, 1, 1, width)
                o = F.scaled_dot_product_attention(
                    q[bi, hi, start:stop].unsqueeze(1),  # [n, 1, S, D]
                    kg.view(n, 1, width, d),
                    vg.view(n, 1, width, d),
                    attn_mask=mask,
                    scale=scale,
                )  # [n, 1, S, D]
                pieces.append(o)
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces)  # [B*H*Tq, 1, S, D]
    return out.view(b, h, tq, s, d)


def _gathered_autograd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slot_tokens: torch.Tensor,
    key_valid: torch.Tensor | None,
    sel: torch.Tensor,
    scale: float,
    budget_bytes: int,
) -> torch.Tensor:
    """Differentiable version: out-of-place ops only, tokens gathered straight from k and v."""
    b, h, tq, s, d = q.shape
    kk = sel.shape[-1]
    width = kk * s
    rows = b * h * tq
    k_rows, v_rows = _token_rows(k), _token_rows(v)
    length = k.shape[2]
    base = torch.div(torch.arange(rows, device=q.device), tq, rounding_mode="floor") * length  # [rows]
    local = sel.reshape(rows, kk)
    qf = q.reshape(rows, s, d) * scale  # [rows, S, D]
    step = _batch_rows(width, d, k.element_size(), budget_bytes, rows)
    pieces: list[torch.Tensor] = []
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        n = stop - start
        tiles = local[start:stop].reshape(-1)  # [n*K]
        tokens = slot_tokens.index_select(0, tiles).view(n, width)  # [n, K*S]
        idx = (tokens + base[start:stop, None]).view(-1)
        kg = k_rows.index_select(0, idx).view(n, width, d)
        vg = v_rows.index_select(0, idx).view(n, width, d)
        scores = torch.bmm(qf[start:stop], kg.transpose(1, 2))  # [n, S, K*S]
        if key_valid is not None:
            scores = scores + _mask_bias(key_valid, tiles, n, q.dtype)
        pieces.append(torch.bmm(torch.softmax(scores, dim=-1), vg))
    return torch.cat(pieces).view(b, h, tq, s, d)
