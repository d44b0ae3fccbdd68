"""Where does the causal student lose the motion: in its first chunk, drawn from noise with no
past, or also in the chunks that continue its own past through the KV cache? Streams every
held-out prompt for `--seconds` through a real session (the shipped sampler, rolling cache) and
scores 2-second windows of the stream that start at `--starts` seconds: prompt fidelity, each
attribute's accuracy and the speed along the prompted direction (the world moves at 0.12-0.18
frame widths/s). A student that only loses the first chunk is slow in the window at 0 and at the
world's speed in the later ones; one that is slow everywhere has not learned to continue either.

    .venv/bin/python -m bench.motion_windows [--weights DIR] [--seconds 5] [--starts 0 0.75 1.5 3]

Numbers in docs/BENCHMARKS.md, "Motion diagnosis".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from engine.eval import evaluate_videos
from engine.eval.model_eval import generate_clip, heldout_prompts
from engine.generator import Generator

ATTRIBUTES = ("count", "colour", "shape", "size", "motion")


def windows(
    weights: Path | None, seconds: float, starts: list[float], window: float, seed: int
) -> list[dict]:
    late = [start for start in starts if start + window > seconds]
    if late:
        raise ValueError(f"windows at {late} s end after the {seconds} s streamed")
    gen = Generator.from_preset("tiny", weights=weights)
    fps = gen.config.fps
    prompts = heldout_prompts()
    clips = [generate_clip(gen, p.text, round(seconds * fps), seed + i) for i, p in enumerate(prompts)]
    rows = []
    for start in starts:
        lo, hi = round(start * fps), round((start + window) * fps)
        res = evaluate_videos([(c[lo:hi], p.text) for c, p in zip(clips, prompts, strict=True)], fps=fps)
        along = res["speed_along_prompt"]
        rows.append(
            {
                "start_s": start,
                "fidelity": res["overall"],
                **{name: res["accuracy"][name] for name in ATTRIBUTES},
                "along_mean": along["mean"],
                "along_median": along["median"],
                "objects": along["objects"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.motion_windows", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", type=Path, default=None, help="weights directory (default: shipped)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds streamed per prompt")
    parser.add_argument("--starts", type=float, nargs="+", default=[0.0, 0.75, 1.5, 3.0])
    parser.add_argument("--window", type=float, default=2.0, help="seconds per scored window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = windows(args.weights, args.seconds, args.starts, args.window, args.seed)
    names = " ".join(f"{name:>6}" for name in ATTRIBUTES)
    print(f"{'window':>11} {'fidelity':>8} {names} {'along':>7} {'median':>7} {'objs':>4}")
    for r in rows:
        span = f"{r['start_s']:.2f}-{r['start_s'] + args.window:.2f}s"
        values = " ".join(f"{r[name]:>6.1%}" for name in ATTRIBUTES)
        print(
            f"{span:>11} {r['fidelity']:>8.1%} {values} "
            f"{r['along_mean']:>+7.3f} {r['along_median']:>+7.3f} {r['objects']:>4}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
