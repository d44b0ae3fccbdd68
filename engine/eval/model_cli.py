"""The `--model` part of `rollcast eval`: generate with a preset, score, print tables."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm

from engine.data.vocab import LINEAR_SPEED

from .model_eval import evaluate_drift, evaluate_prompts, heldout_prompts
from .report import format_accuracy_table, format_drift_table

FIDELITY_GOAL = 0.90
DRIFT_GOAL = 0.95


def run_model_eval(args: argparse.Namespace, quiet: bool) -> dict[str, Any]:
    from engine.generator import Generator

    gen = Generator.from_preset(args.model, weights=args.weights)
    out: dict[str, Any] = {"preset": args.model}
    prompts = heldout_prompts(args.heldout or None, args.seed)
    with tqdm(total=len(prompts), desc="held-out prompts", disable=quiet, file=sys.stderr) as bar:
        rep = evaluate_prompts(
            gen, prompts, args.seconds, args.seed, lambda i, n: bar.update(1), later=args.later
        )
    out["heldout"] = {k: v for k, v in rep.items() if k != "videos"}
    if not quiet:
        print(f"Prompt fidelity of {args.model} on {rep['n']} held-out prompts ({args.seconds:g} s each):")
        row = {"accuracy": rep["accuracy"], "all_correct": rep["all_correct"], "clips": rep["n"]}
        print(format_accuracy_table({"held-out": row}, extra=()))
        kinds = ", ".join(f"{k} {100 * v:.1f}%" for k, v in rep["by_kind"].items())
        print(
            f"fidelity {100 * rep['overall']:.1f}% (goal >= {100 * FIDELITY_GOAL:.0f}%), all attributes "
            f"right {100 * rep['all_correct']:.1f}%; by kind: {kinds}"
        )
        along = rep["speed_along_prompt"]
        if along["objects"]:
            print(
                f"translations: speed along the prompted direction {along['mean']:+.3f} frame widths/s "
                f"(mean; median {along['median']:+.3f}) over {along['objects']} objects; the world's "
                f"are {LINEAR_SPEED[0]:g}-{LINEAR_SPEED[1]:g}"
            )
        if rep["at_border"] is not None:
            print(
                f"objects cut by the frame border in most of their frames: {100 * rep['at_border']:.1f}% "
                "(the world's training clips: none)"
            )
        if rep["later"]:
            print(f"\nLater in the same sessions ({args.seconds:g} s windows):")
            rows = {f"at {w['start_s']:g} s": {**w, "clips": rep["n"]} for w in rep["later"]}
            print(format_accuracy_table(rows, extra=()))
            fidelity = ", ".join(f"{w['start_s']:g} s {100 * w['overall']:.1f}%" for w in rep["later"])
            print(f"fidelity: 0 s {100 * rep['overall']:.1f}%, {fidelity}")
            empty = ", ".join(f"{w['start_s']:g} s {100 * w['empty']:.1f}%" for w in rep["later"])
            print(f"clips with no object in the window: 0 s {100 * rep['empty']:.1f}%, {empty}")
    if args.drift_minutes:
        frames_total = round(args.drift_minutes * 60 * gen.config.fps)
        with tqdm(
            total=frames_total, desc="drift stream", unit="frame", disable=quiet, file=sys.stderr
        ) as bar:
            drift = evaluate_drift(
                gen,
                args.drift_prompt,
                args.drift_minutes,
                args.seed,
                lambda done, n: bar.update(done - bar.n),
            )
        out["drift"] = drift
        if not quiet:
            print(f"\nDrift over {args.drift_minutes:g} minutes of '{args.drift_prompt}':")
            print(format_drift_table(drift))
            ratio = drift["summary"].get("last_over_first")
            if ratio is not None:
                print(f"last-minute fidelity / first-minute fidelity = {ratio:.3f} (goal >= {DRIFT_GOAL})")
    return out
