"""Which sizes and motions does a model draw for the ones a prompt asks? Samples the first
`--seconds` of a session for every held-out prompt (as `rollcast eval --seed S` does: its
held-out scenes and one noise seed per prompt, for each S of `--seeds`), matches the
evaluator's detected objects to the prompt's objects as the fidelity score does, and counts
each (asked, read) pair of size and motion -- "missing" where no object was matched, "unread"
where the frame border hides the size -- with the equal-area radius read for each asked size
(in frame widths; the world's are 0.100 / 0.157 / 0.247, the class boundaries at their
geometric means 0.125 and 0.197). `--world` scores the world's own clips of the same prompts
through the VAE instead: the reference the model is compared with.

    .venv/bin/python -m bench.attribute_confusion [--weights DIR] [--seeds 0 1] [--world]

Numbers in docs/BENCHMARKS.md, "Twenty-fifth session".
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.cli_args import parse_stream_args
from bench.latent_steps import world_round_trip
from engine.data.parse import parse_caption
from engine.eval.fidelity import score_detections
from engine.eval.model_eval import generate_clip, heldout_prompts
from engine.eval.recognise import recognise_tracks
from engine.generator import Generator

ATTRIBUTES = ("size", "motion")


def confusion(
    weights: Path | None, seeds: list[int], seconds: float, world: bool, limit: int = 72
) -> dict[str, Any]:
    """{"size": {asked: {read: n}}, "motion": {...}, "size_frac": {asked: [p10, p25, p50, p75, p90, n]}}."""
    gen = Generator.from_preset("tiny", weights=weights)
    fps = gen.config.fps
    frames = max(1, round(seconds * fps))
    table: dict[str, dict[str, Counter[str]]] = {a: defaultdict(Counter) for a in ATTRIBUTES}
    fracs: dict[str, list[float]] = defaultdict(list)
    for seed in seeds:
        prompts = heldout_prompts(limit, seed)
        if world:
            clips = world_round_trip(gen, prompts, frames, seed)
        else:
            clips = [generate_clip(gen, p.text, frames, seed + i) for i, p in enumerate(prompts)]
        for clip, p in zip(clips, prompts, strict=True):
            asked = parse_caption(p.text)
            objects, _ = recognise_tracks(clip, fps)
            for want, match in zip(asked.objects, score_detections(asked, objects).matches, strict=True):
                got = None if match["detected"] is None else objects[match["detected"]]
                for attr in ATTRIBUTES:
                    if (wanted := getattr(want, attr)) is not None:
                        table[attr][wanted]["missing" if got is None else getattr(got, attr) or "unread"] += 1
                if got is not None and want.size is not None and math.isfinite(got.size_frac):
                    fracs[want.size].append(got.size_frac)
    return {
        **{a: {k: dict(v.most_common()) for k, v in sorted(table[a].items())} for a in ATTRIBUTES},
        "size_frac": {
            k: [*np.round(np.percentile(v, [10, 25, 50, 75, 90]), 3).tolist(), len(v)]
            for k, v in sorted(fracs.items())
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.attribute_confusion", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", type=Path, default=None, help="weights directory (default: shipped)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="noise seeds")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds scored from the session's start")
    parser.add_argument("--world", action="store_true", help="score the world's own clips through the VAE")
    parser.add_argument("--heldout", type=int, default=72, help="held-out prompts per seed")
    args = parse_stream_args(parser, argv)
    result = confusion(args.weights, args.seeds, args.seconds, args.world, args.heldout)
    for attr in ATTRIBUTES:
        print(f"{attr}: asked -> read")
        for asked, reads in result[attr].items():
            total = sum(reads.values())
            right = reads.get(asked, 0)
            shown = ", ".join(f"{k} {n}" for k, n in reads.items())
            print(f"  {asked:>10} ({total:>3}, right {right / total:>4.0%}): {shown}")
    print("equal-area radius / frame width read for each asked size: p10 p25 p50 p75 p90 (objects)")
    for asked, (*pct, n) in result["size_frac"].items():
        print(f"  {asked:>10}: {' '.join(f'{v:.3f}' for v in pct)} ({n})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
