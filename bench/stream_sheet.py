"""Where do the objects go later in a stream? Streams a few held-out straight-line prompts
through real sessions of each weights directory and writes one PNG: a row per (weights,
prompt), one frame per second. The world moves such an object out of the frame and in again
from the other side (a wrap, `engine/data/layout.py`); a student that moves it out and never
brings it back leaves empty frames, which the evaluator scores as a missing object.

    .venv/bin/python -m bench.stream_sheet --weights engine/weights/tiny DIR --out sheet.png \
        [--prompts 3] [--seconds 8] [--seed 0]

Pictures and numbers in docs/BENCHMARKS.md, "Nineteenth session".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from engine.data.eval_prompts import straight_line_prompts
from engine.eval.model_eval import generate_clip
from engine.generator import Generator
from engine.train.images import save_grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stream_sheet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", type=Path, nargs="+", required=True, help="weights directories")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--prompts", type=int, default=3, help="held-out straight-line prompts")
    parser.add_argument("--seconds", type=float, default=8.0, help="stream length")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of every session")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = straight_line_prompts(args.prompts)
    rows = []
    for weights in args.weights:
        gen = Generator.from_preset("tiny", weights=weights)
        fps = round(gen.config.fps)
        for p in chosen:
            rows.append(generate_clip(gen, p.text, round(args.seconds * fps), args.seed))
            print(f"{weights}: {p.text}")
    save_grid(rows, args.out, every=fps)
    print(f"wrote {args.out}: one row per weights and prompt, one frame per second")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
