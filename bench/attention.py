"""Benchmark: VSA sparse attention vs dense SDPA for one generation chunk, on CPU.

Default size is the Wan 1.3B generation case: the current chunk (3 latent frames of 30x52 =
4680 query tokens) against 21 latent frames of keys (6 cached chunks + itself = 32,760 keys),
12 heads of 128, fp32, batch 1. The cached chunks' tile means are precomputed (as the KV cache
keeps them), so the sparse timing covers: tiling the inputs, pooling the current chunk, coarse
attention, top-K selection, the gathered fine stage, the gate mix and the inverse permutation.

Runs are interleaved (dense, s=0.8, s=0.9, then the next round with the order rotated) so that
load from other users of a shared machine hits all methods alike; medians are reported.

    python -m bench.attention --json out.json           # full size (~3 minutes on the shared box)
    python -m bench.attention --quick                   # small size, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.sparse import ChunkLayout, VSAConfig, build_tiling, num_selected, pool_chunk_kv, vsa_attention


@dataclass(frozen=True)
class Case:
    grid: tuple[int, int]
    chunk_frames: int
    key_frames: int
    heads: int
    head_dim: int

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]


FULL = Case(grid=(30, 52), chunk_frames=3, key_frames=21, heads=12, head_dim=128)
QUICK = Case(grid=(15, 16), chunk_frames=3, key_frames=21, heads=4, head_dim=64)


def _flops(
    case: Case, sparsity: float | None, tile: tuple[int, int, int], selection_mask: torch.Tensor | None
) -> float:
    """Multiply-adds x2 of QK^T and PV (dense), or of the fine + coarse stages (sparse)."""
    lq = case.chunk_frames * case.tokens_per_frame
    lk = case.key_frames * case.tokens_per_frame
    if sparsity is None:
        return 4.0 * case.heads * lq * lk * case.head_dim
    assert selection_mask is not None
    n_chunks = case.key_frames // case.chunk_frames
    kt = build_tiling((case.chunk_frames,) * n_chunks, case.grid, tile)
    qt = build_tiling((case.chunk_frames,), case.grid, tile)
    # real query tokens x real selected key tokens, summed over (head, query tile)
    pairs = (selection_mask.double() @ kt.counts.double()) * qt.counts.double()  # [B, H, Tq]
    fine = 4.0 * float(pairs.sum()) * case.head_dim
    coarse = 4.0 * case.heads * qt.num_tiles * kt.num_tiles * case.head_dim
    return fine + coarse


def run(case: Case, sparsities: list[float], runs: int, tile: tuple[int, int, int]) -> dict:
    torch.manual_seed(0)
    n_cached = case.key_frames // case.chunk_frames - 1
    layout = ChunkLayout.cached(case.grid, [case.chunk_frames] * n_cached, case.chunk_frames)
    b, h, d = 1, case.heads, case.head_dim
    q = torch.randn(b, h, layout.num_query_tokens, d)
    k = torch.randn(b, h, layout.num_key_tokens, d)
    v = torch.randn(b, h, layout.num_key_tokens, d)
    gate = 0.01 * torch.randn(b, layout.num_query_tokens, h, d)
    n_cached_tokens = n_cached * case.chunk_frames * case.tokens_per_frame
    pooled = pool_chunk_kv(
        k[:, :, :n_cached_tokens], v[:, :, :n_cached_tokens], case.grid, (case.chunk_frames,) * n_cached, tile
    )
    methods: dict[str, Callable[[], torch.Tensor]] = {
        "dense": lambda: F.scaled_dot_product_attention(q, k, v)
    }
    configs = {s: VSAConfig(enabled=True, sparsity=s, tile=tile) for s in sparsities}

    def sparse(cfg: VSAConfig) -> Callable[[], torch.Tensor]:
        return lambda: vsa_attention(q, k, v, gate, layout, cfg, pooled_kv=pooled)

    for s, cfg in configs.items():
        methods[f"vsa s={s}"] = sparse(cfg)
    times: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    with torch.inference_mode():
        for name in names:  # warm-up (allocator, thread pool, caches of tilings/plans)
            methods[name]()
        for r in range(runs):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                methods[name]()
                times[name].append(time.perf_counter() - t0)
        selections = {
            s: vsa_attention(q, k, v, gate, layout, cfg, pooled_kv=pooled, return_selection=True)[1]
            for s, cfg in configs.items()
        }
    dense_median = statistics.median(times["dense"])
    dense_flops = _flops(case, None, tile, None)
    n_key_tiles = build_tiling((case.chunk_frames,) * (n_cached + 1), case.grid, tile).num_tiles
    rows = [
        {
            "method": "dense",
            "sparsity": 0.0,
            "selected_tiles": n_key_tiles,
            "median_s": dense_median,
            "min_s": min(times["dense"]),
            "times_s": times["dense"],
            "speedup": 1.0,
            "flop_limit": 1.0,
        }
    ]
    for s in sparsities:
        name = f"vsa s={s}"
        med = statistics.median(times[name])
        mask = selections[s].tile_mask
        rows.append(
            {
                "method": name,
                "sparsity": s,
                "selected_tiles": num_selected(n_key_tiles, s),
                "median_s": med,
                "min_s": min(times[name]),
                "times_s": times[name],
                "speedup": dense_median / med,
                "flop_limit": dense_flops / _flops(case, s, tile, mask),
            }
        )
    return {
        "load_average_1m": os.getloadavg()[0],
        "case": {
            "grid": case.grid,
            "query_tokens": layout.num_query_tokens,
            "key_tokens": layout.num_key_tokens,
            "heads": h,
            "head_dim": d,
            "tile": tile,
            "key_tiles": n_key_tiles,
            "dtype": "float32",
        },
        "runs": runs,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }


def print_table(report: dict) -> None:
    c = report["case"]
    print(
        f"VSA vs dense, {c['query_tokens']} queries x {c['key_tokens']} keys, {c['heads']} heads of "
        f"{c['head_dim']}, tile {tuple(c['tile'])} ({c['key_tiles']} key tiles), {c['dtype']}, "
        f"{report['threads']} threads, median of {report['runs']} interleaved runs "
        f"(load average at the end: {report['load_average_1m']:.1f})"
    )
    print(f"{'method':<12} {'K tiles':>8} {'median s':>9} {'min s':>7} {'speedup':>8} {'FLOP limit':>10}")
    for r in report["results"]:
        print(
            f"{r['method']:<12} {r['selected_tiles']:>8} {r['median_s']:>9.3f} {r['min_s']:>7.3f} "
            f"{r['speedup']:>7.2f}x {r['flop_limit']:>9.2f}x"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    p.add_argument("--runs", type=int, default=None, help="interleaved rounds (default 7, quick 5)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.8, 0.9])
    p.add_argument("--tile", type=int, nargs=3, default=None, help="tile shape (frames rows cols)")
    p.add_argument("--json", type=str, default=None, help="write the report here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    case = QUICK if args.quick else FULL
    runs = args.runs or (5 if args.quick else 7)
    tile: tuple[int, int, int] = (args.tile[0], args.tile[1], args.tile[2]) if args.tile else VSAConfig().tile
    report = run(case, args.sparsity, runs, tile)
    print_table(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
