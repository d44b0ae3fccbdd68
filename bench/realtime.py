"""Is a preset real-time on this machine? Time to first frame and steady-state frames/s.

    python -m bench.realtime                         # tiny preset, 5 runs, 2 torch threads
    python -m bench.realtime --preset tiny --runs 7 --chunks 24 --encode --json out.json

Per run: a fresh session is opened (prompt encoding, cache allocation) and stepped. "First
frame" is the time from calling `Generator.open` to the first chunk's decoded frames.
"Steady" is frames per second over the chunks after the rolling KV cache is full (the
slowest state of a stream), VAE decode included; `--encode` also times H.264 fMP4 encoding
of each chunk, as the worker does. Medians over runs; every run's numbers go to --json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from bench.cli_args import cache_overrides, parse_stream_args
from engine.generator import Generator

PROMPTS = (
    "a red circle moving left on a black background",
    "a small blue square bouncing",
    "two objects: a yellow triangle moving up and a white square staying still",
)


def one_run(gen: Generator, prompt: str, seed: int, chunks: int, encode: bool) -> dict[str, Any]:
    encoder = None
    if encode:
        from server.media import FMP4Encoder

        encoder = FMP4Encoder(gen.config.width, gen.config.height, gen.config.fps)
    t0 = time.perf_counter()
    session = gen.open(prompt, seed=seed)
    first = session.step()
    if encoder is not None:
        encoder.encode_chunk(first.frames)
    ttff = time.perf_counter() - t0
    warm = -(-gen.config.cache.max_frames // gen.config.sampler.frames_per_chunk)  # chunks to fill the cache
    for _ in range(warm):
        chunk = session.step()
        if encoder is not None:
            encoder.encode_chunk(chunk.frames)
    frames, t1 = 0, time.perf_counter()
    denoise = decode = 0.0
    for _ in range(chunks):
        chunk = session.step()
        if encoder is not None:
            encoder.encode_chunk(chunk.frames)
        frames += chunk.num_frames
        denoise += chunk.timings.denoise_s
        decode += chunk.timings.decode_s
    elapsed = time.perf_counter() - t1
    session.close()
    return {
        "ttff_s": ttff,
        "steady_fps": frames / elapsed,
        "chunk_s": elapsed / chunks,
        "denoise_s": denoise / chunks,
        "decode_s": decode / chunks,
        "frames_per_chunk": frames / chunks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=16, help="steady-state chunks timed per run")
    parser.add_argument("--encode", action="store_true", help="include H.264 fMP4 encoding")
    args = parse_stream_args(parser, argv)
    gen = Generator.from_preset(args.preset, weights=args.weights, overrides=cache_overrides(args.cache))
    one_run(gen, PROMPTS[0], 0, 2, args.encode)  # warm-up (allocator, kernels)
    runs = []
    for i in range(args.runs):
        # a new prompt text per run: its encoding is part of the time to first frame
        runs.append(one_run(gen, f"{PROMPTS[i % len(PROMPTS)]} #{i}", i, args.chunks, args.encode))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    cfg = gen.config
    print(
        f"{args.preset}: {cfg.width}x{cfg.height} @ {cfg.fps} fps, {args.threads} threads, "
        f"{args.runs} runs{' with encoding' if args.encode else ''}"
    )
    print(
        f"  first frame        {med['ttff_s'] * 1e3:8.1f} ms   (runs: "
        + ", ".join(f"{r['ttff_s'] * 1e3:.0f}" for r in runs)
        + ")"
    )
    print(
        f"  steady state       {med['steady_fps']:8.1f} frames/s (runs: "
        + ", ".join(f"{r['steady_fps']:.1f}" for r in runs)
        + f"); playback needs {cfg.fps}"
    )
    print(
        f"  per chunk          {med['chunk_s'] * 1e3:8.1f} ms = denoise {med['denoise_s'] * 1e3:.1f}"
        f" + decode {med['decode_s'] * 1e3:.1f} (+ encode), {med['frames_per_chunk']:.0f} frames"
    )
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "median": med, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
