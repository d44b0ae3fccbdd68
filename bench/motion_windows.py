"""Where does the causal student lose the motion: in its first chunk, drawn from noise with no
past, or also in the chunks that continue its own past through the KV cache? Streams every
held-out prompt through a real session (the shipped sampler, rolling cache) and scores the
2-second windows of the stream that start at `--starts` seconds (`rollcast eval --later`):
prompt fidelity, each attribute's accuracy, the speed along the prompted direction (the
world moves at 0.12-0.18 frame widths/s) and the share of objects the frame border cuts in
most of the window ("border"; none in the world's training clips), and the share of clips
with no object at all ("empty": one that left the frame and did not come back). A student that
only loses the first chunk is slow in the window at 0 and at the world's speed in the later
ones; one that is slow everywhere has not learned to continue either. The held-out scenes are
seed 0's whatever `--seed` (which draws the noise only), so seeds compare the same prompts. The
window at 0 s is always scored.
`--cache FRAMES SINK` streams with another rolling KV cache than the preset's (latent frames in
all, sink frames among them), for weights trained with one cache and sampled with another.

    .venv/bin/python -m bench.motion_windows [--weights DIR] [--starts 0.75 1.5 3] [--seed S] [--cache 6 0]

Numbers in docs/BENCHMARKS.md, "Motion diagnosis" and "Tiny model: prompt fidelity and drift".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.cli_args import cache_overrides, parse_stream_args
from engine.eval.fidelity import ATTRIBUTES
from engine.eval.model_eval import evaluate_prompts, heldout_prompts
from engine.generator import Generator


def windows(
    weights: Path | None, starts: list[float], window: float, seed: int, cache: list[int] | None = None
) -> list[dict]:
    gen = Generator.from_preset("tiny", weights=weights, overrides=cache_overrides(cache))
    later = [s for s in starts if s > 0]
    report = evaluate_prompts(gen, heldout_prompts(), window, seed, later=later)
    return [
        {
            "start_s": w["start_s"],
            "fidelity": w["overall"],
            **{name: w["accuracy"][name] for name in ATTRIBUTES},
            "along_mean": w["speed_along_prompt"]["mean"],
            "along_median": w["speed_along_prompt"]["median"],
            "objects": w["speed_along_prompt"]["objects"],
            "at_border": w["at_border"],
            "empty": w["empty"],
        }
        for w in [{"start_s": 0.0, **report}, *report["later"]]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.motion_windows", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", type=Path, default=None, help="weights directory (default: shipped)")
    parser.add_argument("--starts", type=float, nargs="+", default=[0.75, 1.5, 3.0], help="later windows")
    parser.add_argument("--window", type=float, default=2.0, help="seconds per scored window")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (the scenes stay seed 0's)")
    args = parse_stream_args(parser, argv)
    rows = windows(args.weights, args.starts, args.window, args.seed, args.cache)
    names = " ".join(f"{name:>6}" for name in ATTRIBUTES)
    columns = f"{'along':>7} {'median':>7} {'objs':>4} {'border':>6} {'empty':>6}"
    print(f"{'window':>11} {'fidelity':>8} {names} {columns}")
    for r in rows:
        span = f"{r['start_s']:.2f}-{r['start_s'] + args.window:.2f}s"
        values = " ".join(f"{r[name]:>6.1%}" for name in ATTRIBUTES)
        border = "-" if r["at_border"] is None else f"{r['at_border']:.1%}"
        print(
            f"{span:>11} {r['fidelity']:>8.1%} {values} "
            f"{r['along_mean']:>+7.3f} {r['along_median']:>+7.3f} {r['objects']:>4} {border:>6} "
            f"{r['empty']:>6.1%}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
