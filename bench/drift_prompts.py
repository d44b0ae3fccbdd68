"""Does a long stream stay on prompt for more than one prompt? `rollcast eval --drift-minutes`
streams one prompt; this streams `--prompts` held-out prompts (spread over the held-out list:
triples in canonical wording and held-out templates) for `--minutes` each, one session per
prompt, and scores each with the same drift report (10-second windows, one-minute buckets).
Prints, per minute, the mean fidelity and attribute accuracies over the prompts and the share
of windows in which no object was found at all (the object vanished); then each prompt's
first- and last-minute fidelity. `--prompt P` (repeatable) streams P instead. `--cache FRAMES
SINK` streams with another rolling KV cache than the preset's, as in `bench.motion_windows`.

    .venv/bin/python -m bench.drift_prompts [--weights DIR] [--prompts 8] [--minutes 10] [--cache 6 0]
    .venv/bin/python -m bench.drift_prompts --prompt P [--prompt P2 ...] [--cache 12 3]

Numbers in docs/BENCHMARKS.md, "Tiny model: prompt fidelity and drift".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.cli_args import cache_overrides, parse_stream_args
from engine.eval.fidelity import ATTRIBUTES
from engine.eval.model_eval import evaluate_drift, heldout_prompts
from engine.generator import Generator


def spread(items: list[Any], n: int) -> list[Any]:
    """`n` items evenly spaced over `items`, first and last included (all of them if fewer)."""
    if n >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def per_minute(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over prompts per one-minute bucket: fidelity, each attribute, vanished-window share."""
    rows = []
    for b in range(min(len(r["buckets"]) for r in reports)):
        buckets = [r["buckets"][b] for r in reports]
        windows = [w for r in reports for w in r["windows"] if int(w["start_s"] // r["bucket_s"]) == b]
        attrs = {
            a: [x["per_attribute"][a] for x in buckets if x["per_attribute"][a] is not None]
            for a in ATTRIBUTES
        }
        rows.append(
            {
                "minute": b,
                "fidelity": float(np.mean([x["fidelity"] or 0.0 for x in buckets])),
                "per_attribute": {a: float(np.mean(v)) if v else None for a, v in attrs.items()},
                "vanished": float(np.mean([not w["detected"] for w in windows])),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drift_prompts", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", type=Path, default=None, help="weights directory (default: shipped)")
    parser.add_argument("--prompts", type=int, default=8, help="held-out prompts streamed")
    parser.add_argument(
        "--prompt", action="append", default=None, help="stream this prompt instead (repeatable)"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes streamed per prompt")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (prompt i uses seed + i)")
    args = parse_stream_args(parser, argv)
    gen = Generator.from_preset("tiny", weights=args.weights, overrides=cache_overrides(args.cache))
    prompts = args.prompt or [p.text for p in spread(heldout_prompts(), args.prompts)]
    reports = []
    for i, prompt in enumerate(prompts):
        reports.append(evaluate_drift(gen, prompt, args.minutes, args.seed + i, keep_windows=True))
        print(f"[{i + 1}/{len(prompts)}] {prompt}", flush=True)
    rows = per_minute(reports)
    print(f"\n{len(prompts)} prompts x {args.minutes:g} min; means over prompts per minute")
    print(f"{'minute':>6} {'fidelity':>8} " + " ".join(f"{a:>6}" for a in ATTRIBUTES) + f" {'vanished':>8}")
    for r in rows:
        cells = " ".join(
            f"{'-':>6}" if v is None else f"{v:>6.0%}" for v in (r["per_attribute"][a] for a in ATTRIBUTES)
        )
        print(f"{r['minute']:>6} {r['fidelity']:>8.1%} {cells} {r['vanished']:>8.0%}")
    print("\nper prompt: first minute -> last minute fidelity")
    for prompt, rep in zip(prompts, reports, strict=True):
        fid = [b["fidelity"] or 0.0 for b in rep["buckets"]]
        print(f"  {fid[0]:6.1%} -> {fid[-1]:6.1%}  {prompt}")
    if args.json:
        args.json.write_text(json.dumps({"prompts": prompts, "minutes": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
