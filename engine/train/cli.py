"""`rollcast train STAGE`: run one stage of the tiny model's training recipe.

    rollcast train text           # the grounding head of the prompt encoder
    rollcast train vae            # the streaming VAE
    rollcast train teacher        # bidirectional flow-matching teacher (caption dropout, CFG)
    rollcast train ode            # ODE initialisation of the causal student
    rollcast train self-forcing   # Self Forcing: rollouts with the KV cache + DMD
    rollcast train export         # install the final weights as the `tiny` preset
    rollcast train export --blend 0.5   # ... the student halfway from the weights it started from
    rollcast train plot           # loss curves of a run as PNGs (--dest, default docs/img)

Every stage reads the previous stages' outputs from `--out` (default runs/tiny), writes
`--out/STAGE/` (checkpoint.pt, metrics.jsonl, weights), checkpoints periodically, resumes with
`--resume` and stops within `--max-minutes`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

HELP = "train a stage of the tiny model (text, vae, teacher, ode, self-forcing) or export its weights"
STAGES: dict[str, str] = {
    "text": "engine.train.stages.text",
    "vae": "engine.train.stages.vae",
    "teacher": "engine.train.stages.teacher",
    "ode": "engine.train.stages.ode",
    "self-forcing": "engine.train.stages.self_forcing",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=[*STAGES, "export", "plot"], help="stage to run")
    parser.add_argument(
        "--config", type=Path, default=None, help="stage config TOML (default: the shipped one)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/tiny"), help="run directory shared by the stages"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the stage's checkpoint")
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of the stage")
    parser.add_argument("--max-steps", type=int, default=None, help="step limit of the stage")
    parser.add_argument("--preset", choices=["tiny", "test"], default="tiny", help="model sizes")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    parser.add_argument(
        "--dest", type=Path, default=None, help="export: weights directory (default: the package's)"
    )
    parser.add_argument(
        "--blend",
        type=float,
        default=1.0,
        help="export: the student moved back towards the weights its self-forcing stage started from "
        "(start + BLEND * (student - start); default 1: the student)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from engine.train.config import default_config_path, load_config, parse_overrides

    if args.stage == "plot":
        from engine.train.plots import plot_run

        for path in plot_run(args.out, args.dest or Path("docs/img")):
            print(path)
        return 0
    if args.stage == "export":
        from engine.train.export import export_weights

        try:
            written = export_weights(args.out, args.preset, args.dest, args.blend)
        except (ValueError, FileNotFoundError) as exc:
            print(f"rollcast train: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
        return 0
    module = importlib.import_module(STAGES[args.stage])
    overrides = parse_overrides(args.set)
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    path = args.config if args.config is not None else default_config_path(args.stage)
    try:
        cfg = load_config(module.CONFIG, path if path.exists() else None, overrides)
    except ValueError as exc:
        print(f"rollcast train: {exc}", file=sys.stderr)
        return 2
    try:
        summary = module.train(cfg, args.out, preset=args.preset, resume=args.resume, quiet=args.quiet)
    except (FileNotFoundError, ValueError) as exc:  # a missing stage, or a config its data cannot serve
        print(f"rollcast train: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rollcast train", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
