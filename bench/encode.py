"""Encoding cost per chunk: H.264/fMP4 (FMP4Encoder) and JPEG (JPEGEncoder).

Synthetic but video-like content (a moving colour gradient with a moving square and mild
noise), chunks of 12 frames by default, one warm-up chunk per configuration. Prints a table
(median and p90 milliseconds per chunk, per frame, output kilobytes per chunk) and writes JSON
with --json.

    .venv/bin/python bench/encode.py [--frames 12] [--chunks 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.media.fmp4 import FMP4Encoder
from server.media.jpeg import JPEGEncoder


def make_chunk(first: int, n: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, height, width, 3), np.uint8)  # [n, H, W, 3]
    for k in range(n):
        t = first + k
        out[k, ..., 0] = (x / width * 200 + t * 3) % 256
        out[k, ..., 1] = (y / height * 200 + t * 2) % 256
        out[k, ..., 2] = ((x + y) / (width + height) * 255 + t * 5) % 256
        s = max(8, height // 6)
        x0 = (t * 7) % (width - s)
        out[k, s : 2 * s, x0 : x0 + s] = 255
    noise = rng.integers(-4, 5, out.shape, dtype=np.int16)
    return np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def run_case(encode: Callable[[np.ndarray], int], chunks: list[np.ndarray]) -> dict[str, float]:
    encode(chunks[0])  # warm-up (first IDR, allocations)
    times: list[float] = []
    sizes: list[int] = []
    for chunk in chunks[1:]:
        t0 = time.perf_counter()
        sizes.append(encode(chunk))
        times.append(time.perf_counter() - t0)
    times.sort()
    n = chunks[0].shape[0]
    med = statistics.median(times)
    return {
        "median_ms": med * 1e3,
        "p90_ms": times[int(0.9 * (len(times) - 1))] * 1e3,
        "ms_per_frame": med * 1e3 / n,
        "kb_per_chunk": statistics.mean(sizes) / 1e3,
    }


def fmp4_size(enc: FMP4Encoder) -> Callable[[np.ndarray], int]:
    """Encode one chunk with `enc`, return its bytes."""
    return lambda chunk: len(enc.encode_chunk(chunk))


def jpeg_size(enc: JPEGEncoder) -> Callable[[np.ndarray], int]:
    """Encode one chunk's frames with `enc`, return their bytes."""
    return lambda chunk: sum(len(b) for b in enc.encode_frames(chunk))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12, help="frames per chunk")
    ap.add_argument("--chunks", type=int, default=20, help="timed chunks per case (+1 warm-up)")
    ap.add_argument("--sizes", default="128x128,832x480")
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--json", type=Path, help="write results here")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    rows: list[dict[str, object]] = []
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        chunks = [
            make_chunk(i * args.frames, args.frames, width, height, rng) for i in range(args.chunks + 1)
        ]
        cases: list[tuple[str, Callable[[np.ndarray], int]]] = []
        for preset, threads in (("ultrafast", 1), ("ultrafast", 0), ("veryfast", 1)):
            t0 = time.perf_counter()
            enc = FMP4Encoder(width, height, args.fps, preset=preset, threads=threads)
            create_ms = (time.perf_counter() - t0) * 1e3
            label = f"fmp4 {preset} crf23 threads={threads or 'auto'} (create {create_ms:.1f} ms)"
            cases.append((label, fmp4_size(enc)))
        cases.append(("jpeg q85", jpeg_size(JPEGEncoder(85))))
        for label, fn in cases:
            rows.append({"size": size, "case": label, "frames": args.frames, **run_case(fn, chunks)})

    header = f"{'size':>8}  {'case':<52} {'median ms':>9} {'p90 ms':>7} {'ms/frame':>8} {'kB/chunk':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['size']:>8}  {r['case']:<52} {r['median_ms']:>9.2f} {r['p90_ms']:>7.2f} "
            f"{r['ms_per_frame']:>8.2f} {r['kb_per_chunk']:>8.1f}"
        )
    env = {
        "python": platform.python_version(),
        "pyav": av.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(f"\n{args.frames} frames/chunk, {args.chunks} timed chunks, {env}")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
