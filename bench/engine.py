"""Engine speed on this machine: time per chunk of a preset, and of one wan-1.3b layer.

    python -m bench.engine                      # test + tiny presets, wan-1.3b one layer (CPU)
    python -m bench.engine --wan-layers 1 --repeats 3 --json out.json
    python -m bench.engine --device cuda --wan-layers 30 --dtype bfloat16   # full model on a GPU

A chunk = all denoising passes + the cache-refresh pass on one chunk of latent frames, with the
KV cache already full (the rolling window's steady state, the slowest point of a stream).
Random weights: speed does not depend on their values. Prints a table of medians; --json
writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from typing import Any

import torch

from engine.config import GeneratorConfig
from engine.kv_cache import KVCache
from engine.model.dit import CausalDiT
from engine.presets import get_preset
from engine.rollout import generate_chunk
from engine.sampler import FlowMatchSchedule


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def full_cache(
    cfg: GeneratorConfig, dit: CausalDiT, device: torch.device, dtype: torch.dtype
) -> tuple[KVCache, int]:
    """A cache filled with random K/V up to its capacity; returns it and the next chunk's frame."""
    heads, head_dim = dit.cache_shape()
    cache = KVCache(
        cfg.cache,
        num_layers=cfg.dit.num_layers,
        tokens_per_frame=cfg.tokens_per_frame,
        heads=heads,
        head_dim=head_dim,
        dtype=dtype,
        device=device,
        grid=cfg.grid,
    )
    for k, v in zip(cache.k, cache.v, strict=True):
        k.normal_()
        v.normal_()
    n, tpf = cfg.sampler.frames_per_chunk, cfg.tokens_per_frame
    frames = cfg.cache.max_frames - cfg.cache.max_frames % n
    for start in range(0, frames, n):  # bookkeeping only: the buffers already hold random K/V
        cache.plan_write(start * tpf, n * tpf)
    return cache, frames


def time_chunks(
    cfg: GeneratorConfig, device: torch.device, dtype: torch.dtype, repeats: int
) -> dict[str, Any]:
    torch.manual_seed(0)
    dit = CausalDiT(cfg.dit).to(device, dtype).eval()
    schedule = FlowMatchSchedule(cfg.sampler)
    prompt = dit.encode_prompt(torch.randn(1, cfg.dit.text_len, cfg.dit.text_dim, device=device, dtype=dtype))
    n = cfg.sampler.frames_per_chunk
    shape = (1, n, cfg.dit.in_dim, cfg.latent_height, cfg.latent_width)
    times = []
    cache, frame = full_cache(cfg, dit, device, dtype)
    for i in range(repeats + 1):  # first run warms up
        noise = torch.randn(shape, device=device, dtype=dtype)
        sync(device)
        t0 = time.perf_counter()
        generate_chunk(
            dit,
            schedule,
            prompt,
            [cache],
            [frame],
            noise,
            lambda k, s: torch.randn(s, device=device, dtype=dtype),
        )
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
        frame += n
    passes = schedule.num_steps + 1
    median = statistics.median(times)
    return {
        "preset": cfg.name,
        "layers": cfg.dit.num_layers,
        "dim": cfg.dit.dim,
        "query_tokens": n * cfg.tokens_per_frame,
        "cached_tokens": cfg.cache.max_frames * cfg.tokens_per_frame,
        "passes": passes,
        "chunk_s": median,
        "pass_s": median / passes,
        "runs": times,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="test,tiny", help="comma-separated presets to time whole")
    parser.add_argument("--wan-layers", type=int, default=1, help="layers of the wan-1.3b shapes (0: skip)")
    parser.add_argument("--repeats", type=int, default=5, help="timed chunks per configuration")
    parser.add_argument("--wan-repeats", type=int, default=3, help="timed chunks for wan-1.3b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="write results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    configs = [get_preset(p) for p in args.presets.split(",") if p]
    if args.wan_layers:
        wan = get_preset("wan-1.3b")
        configs.append(
            wan.replace(
                name=f"wan-1.3b x{args.wan_layers} layer", dit=replace(wan.dit, num_layers=args.wan_layers)
            )
        )
    results = []
    print(f"{'configuration':<24} {'layers':>6} {'q tok':>6} {'kv tok':>6} {'chunk s':>9} {'pass s':>9}")
    for cfg in configs:
        repeats = args.wan_repeats if cfg.name.startswith("wan") else args.repeats
        r = time_chunks(cfg, device, dtype, repeats)
        results.append(r)
        print(
            f"{r['preset']:<24} {r['layers']:>6} {r['query_tokens']:>6} {r['cached_tokens']:>6} "
            f"{r['chunk_s']:>9.4f} {r['pass_s']:>9.4f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
