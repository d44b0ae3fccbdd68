"""Do objects keep their size as a stream goes on? For every held-out prompt with one object on a
plain black background that neither grows nor shrinks, streams `--seconds` through a real
session and measures the object's area (pixels whose brightest channel exceeds 80) per chunk,
as log(area / the world's area for the same prompt through the VAE). 0 is the world's size;
-0.4 is a third less area, about where the evaluator's size class changes. The peak brightness
is printed too, so that a fading object is not mistaken for a shrinking one. `--cache` streams
with another rolling KV cache than the preset's, as in `bench.motion_windows`.

    .venv/bin/python -m bench.size_drift [--weights DIR] [--seconds 6] [--seeds 0 1] [--cache 6 0]

Numbers in docs/BENCHMARKS.md, "Tiny model: prompt fidelity and drift".
"""

from __future__ import annotations

import argparse
import json
from itertools import pairwise
from pathlib import Path

import numpy as np

from bench.cli_args import cache_overrides, parse_stream_args
from bench.latent_steps import BRIGHT, single_objects_on_black, world_round_trip
from engine.eval.model_eval import generate_clip, heldout_prompts
from engine.generator import Generator

SHRUNK = -0.4  # log area ratio counted as "shrunk" (and +0.4 as "grown")


def object_area(frames: np.ndarray) -> float:
    """Median bright-pixel count per frame of uint8 frames [T, H, W, 3]."""
    return float(np.median((frames.max(axis=3) > BRIGHT).sum(axis=(1, 2))))


def peak_brightness(frames: np.ndarray) -> float:
    """Median over frames of the 99.5th percentile of the brightest channel."""
    per_frame = frames.max(axis=3).reshape(len(frames), -1)
    return float(np.median(np.percentile(per_frame, 99.5, axis=1)))


def size_drift(
    weights: Path | None, seconds: float, seeds: list[int], cache: list[int] | None = None
) -> list[dict]:
    """One row per chunk: median and mean log area ratio over the prompts and seeds, the shares
    shrunk and grown past +-0.4, and the median peak brightness."""
    gen = Generator.from_preset("tiny", weights=weights, overrides=cache_overrides(cache))
    prompts = [
        p
        for p in single_objects_on_black(heldout_prompts())
        if p.spec.objects[0].motion not in ("growing", "shrinking")
    ]
    per_chunk = gen.config.sampler.frames_per_chunk
    frames = round(seconds * gen.config.fps)
    ends = [gen.config.vae.pixel_frames(per_chunk * (c + 1)) for c in range(frames)]
    bounds = [0, *(e for e in ends if e <= frames)]  # chunk c: frames bounds[c] .. bounds[c + 1]
    ratios, peaks = [], []
    for seed in seeds:
        world = [object_area(w) for w in world_round_trip(gen, prompts, bounds[2], seed)]
        for i, (p, area) in enumerate(zip(prompts, world, strict=True)):
            clip = generate_clip(gen, p.text, frames, seed * 1000 + i)
            parts = [clip[lo:hi] for lo, hi in pairwise(bounds)]
            ratios.append([np.log(max(object_area(c), 1.0) / area) for c in parts])
            peaks.append([peak_brightness(c) for c in parts])
    r, b = np.array(ratios), np.array(peaks)  # [prompts x seeds, chunks]
    return [
        {
            "chunk": c,
            "start_s": bounds[c] / gen.config.fps,
            "median": float(np.median(r[:, c])),
            "mean": float(np.mean(r[:, c])),
            "shrunk": float(np.mean(r[:, c] < SHRUNK)),
            "grown": float(np.mean(r[:, c] > -SHRUNK)),
            "peak": float(np.median(b[:, c])),
            "prompts": len(prompts),
            "seeds": len(seeds),
        }
        for c in range(r.shape[1])
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.size_drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="weights directory (default: shipped)")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds streamed per prompt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="noise seeds (pooled)")
    args = parse_stream_args(parser, argv)
    rows = size_drift(args.weights, args.seconds, args.seeds, args.cache)
    print(f"{rows[0]['prompts']} prompts x {len(args.seeds)} seeds; log(area / world's area) per chunk")
    print(f"{'chunk':>5} {'from':>6} {'median':>7} {'mean':>7} {'shrunk':>6} {'grown':>6} {'peak':>5}")
    for r in rows:
        print(
            f"{r['chunk']:>5} {r['start_s']:>5.2f}s {r['median']:>+7.3f} {r['mean']:>+7.3f} "
            f"{r['shrunk']:>6.0%} {r['grown']:>6.0%} {r['peak']:>5.0f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
