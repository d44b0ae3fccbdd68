"""Streaming VAE decode cost per latent chunk (random weights: speed does not depend on them).

Decodes a stream of latent chunks with `StreamingDecoder` and reports, per configuration,
the first chunk and the steady state (median / p90 ms per chunk, pixel frames per second),
the decoder cache size and, on CUDA, the peak memory. Default: the Wan2.1 VAE (width 96) at
480x832 (60x104 latents), chunks of 3 latent frames (12 pixel frames), frame-by-frame passes
and whole-chunk passes.

    .venv/bin/python bench/vae_decode.py [--device cuda] [--dtype bf16] [--dim 96]
        [--height 480 --width 832] [--chunk 3] [--chunks 6] [--passes 1,chunk] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.vae import StreamingDecoder, VAEConfig, WanVAE

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(vae: WanVAE, args: argparse.Namespace, frames_per_pass: int | None) -> dict[str, float]:
    device = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    cfg = vae.config
    h, w = args.height // cfg.spatial_stride, args.width // cfg.spatial_stride
    gen = torch.Generator(device="cpu").manual_seed(0)
    chunks = [torch.randn(1, cfg.z_dim, args.chunk, h, w, generator=gen) for _ in range(args.chunks)]
    decoder = StreamingDecoder(vae, frames_per_pass=frames_per_pass)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    for chunk in chunks:
        z = chunk.to(device=device, dtype=dtype)
        sync(device)
        t0 = time.perf_counter()
        decoder.decode(z)
        sync(device)
        times.append(time.perf_counter() - t0)
    steady = sorted(times[1:]) or times
    med = statistics.median(steady)
    return {
        "first_chunk_ms": times[0] * 1e3,
        "median_ms": med * 1e3,
        "p90_ms": steady[int(0.9 * (len(steady) - 1))] * 1e3,
        "pixel_fps": cfg.temporal_stride * args.chunk / med,
        "cache_mb": decoder.cache_nbytes() / 2**20,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--dim", type=int, default=96, help="VAE width (96 = Wan2.1)")
    p.add_argument("--num-res-blocks", type=int, default=2)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--chunk", type=int, default=3, help="latent frames per chunk")
    p.add_argument("--chunks", type=int, default=6, help="chunks decoded (the first is reported apart)")
    p.add_argument("--passes", default="1,chunk", help="frames per decoder pass: comma list of N or 'chunk'")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = VAEConfig(dim=args.dim, num_res_blocks=args.num_res_blocks)
    vae = WanVAE(cfg).to(device=device, dtype=DTYPES[args.dtype]).eval().requires_grad_(False)

    rows = []
    for spec in args.passes.split(","):
        fpp = None if spec == "chunk" else int(spec)
        rows.append({"frames_per_pass": spec, **run_case(vae, args, fpp)})

    print(
        f"VAE dim {args.dim} | {args.height}x{args.width} | chunk {args.chunk} latent frames "
        f"({cfg.temporal_stride * args.chunk} pixel frames) | {args.device} {args.dtype} "
        f"| torch {torch.__version__}"
    )
    cols = ("pass", 6), ("first ms", 9), ("median ms", 10), ("p90 ms", 8), ("pixel fps", 10), ("cache MB", 9)
    print(" ".join(f"{name:>{width}}" for name, width in (*cols, ("peak MB", 8))))
    for r in rows:
        print(
            f"{r['frames_per_pass']:>6} {r['first_chunk_ms']:9.1f} {r['median_ms']:10.1f} {r['p90_ms']:8.1f} "
            f"{r['pixel_fps']:10.1f} {r['cache_mb']:9.1f} {r['peak_gpu_mb']:8.0f}"
        )
    if args.json:
        meta = {
            "torch": torch.__version__,
            "platform": platform.platform(),
            "args": vars(args) | {"json": None},
        }
        if device.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name(device)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
