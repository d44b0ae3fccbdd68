"""`rollcast eval`: score a model's prompt fidelity and long-stream drift; validate the evaluator.

``--model PRESET`` generates video with a model (``--weights`` to choose a checkpoint) and
scores it: ``--heldout N`` clips for N held-out prompts (unseen colour-shape-motion triples and
unseen caption templates; ``--later S ...``: the same sessions stream on and their windows at S
seconds are scored too), ``--drift-minutes M`` one M-minute stream (per-minute fidelity,
sharpness, colour stability, flicker, frozen frames).

``--validate N`` renders N synthetic clips (half training split, half held-out), scores them
clean and under mild degradations, runs the defect-detection checks and prints the tables; this
is the evidence that the evaluator can be trusted. ``--stream-minutes M`` additionally renders an
M-minute synthetic stream with a prompt switch every minute and prints its drift table
(``--stream-defect`` corrupts the second half to show the alarms firing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from engine.data.render import RenderConfig

from .report import format_accuracy_table, format_drift_table, format_table
from .validate import CONDITIONS, DEFECTS, run_stream_validation, run_validation

HELP = "score prompt fidelity and long-stream drift of generated video; validate the evaluator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="PRESET", default=None, help="generate with this preset (e.g. tiny)"
    )
    parser.add_argument("--weights", default=None, help="checkpoint file or directory for --model")
    parser.add_argument(
        "--heldout", type=int, default=0, metavar="N", help="score N held-out prompts (0: all)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of video per held-out prompt")
    parser.add_argument(
        "--later",
        type=float,
        nargs="+",
        default=[],
        metavar="S",
        help="also score each held-out session's window of --seconds starting S s into its stream",
    )
    parser.add_argument("--drift-minutes", type=float, default=0.0, metavar="M", help="stream M minutes")
    parser.add_argument("--drift-prompt", default="a red circle bouncing on a black background")
    parser.add_argument(
        "--validate", type=int, metavar="N", default=0, help="render N synthetic clips and report accuracy"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--conditions", default="clean,mild,h264", help=f"comma list of {','.join(CONDITIONS)}"
    )
    parser.add_argument(
        "--defects",
        type=int,
        default=None,
        metavar="N",
        help="clips for defect detection (default min(N, 100))",
    )
    parser.add_argument(
        "--stream-minutes",
        type=float,
        default=0.0,
        metavar="M",
        help="also validate drift on an M-minute stream",
    )
    parser.add_argument(
        "--stream-defect", choices=sorted(DEFECTS), default=None, help="corrupt the stream's second half"
    )
    parser.add_argument("--resolution", type=int, default=128, help="square frame size in px")
    parser.add_argument("--fps", type=float, default=16.0)
    parser.add_argument("--frames", type=int, default=33, help="frames per clip")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write JSON to PATH ('-' = stdout, no tables)",
    )


def _accuracy_rows(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = {}
    for cond, summary in res["accuracy"].items():
        rows[cond] = summary
        for split in ("train", "heldout"):
            rows[f"  {cond}/{split}"] = res["accuracy_by_split"][f"{cond}/{split}"]
    return rows


def _print_validation(res: dict[str, Any]) -> None:
    cfg = res["config"]
    print(
        f"Evaluator validation: {res['clips']} clips ({res['two_object_clips']} with two objects), "
        f"{cfg['width']}x{cfg['height']} @ {cfg['fps']:g} fps, {cfg['frames']} frames, seed {cfg['seed']}"
    )
    print("\nPer-attribute accuracy (object level; count per clip):")
    print(format_accuracy_table(_accuracy_rows(res)))
    print("\nDefect detection (alarm must fire on corrupted clips):")
    rows = [
        [
            d,
            v["alarm"],
            f"{v['detected']}/{v['eligible']}",
            "-" if v["rate"] is None else f"{100 * v['rate']:.1f}%",
        ]
        for d, v in res["defect_detection"].items()
    ]
    print(format_table(["defect", "alarm", "detected", "rate"], rows))
    print("\nFalse alarm rate on uncorrupted clips:")
    kinds = ["blur", "colour", "flicker", "frozen"]
    rows = [[c, *(f"{100 * fa[k]:.1f}%" for k in kinds)] for c, fa in res["false_alarm_rate"].items()]
    print(format_table(["condition", *kinds], rows))
    sp = res["seconds_per_clip"]
    print(f"\nTime per clip: render {1000 * sp['render']:.1f} ms, evaluate {1000 * sp['evaluate']:.1f} ms")


def run(args: argparse.Namespace) -> int:
    if not (args.validate or args.stream_minutes or args.model):
        print("nothing to do: pass --model PRESET, --validate N and/or --stream-minutes M", file=sys.stderr)
        return 2
    cfg = RenderConfig(args.resolution, args.resolution, args.fps, args.frames)
    quiet = args.json == "-"
    out: dict[str, Any] = {}
    if args.model:
        from .model_cli import run_model_eval

        out["model"] = run_model_eval(args, quiet)
    if args.validate:
        conds = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
        unknown = [c for c in conds if c not in CONDITIONS]
        if unknown:
            print(f"unknown condition(s): {unknown}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        progress = None if quiet else (lambda msg: print(f"  ... {msg}", file=sys.stderr))
        res = run_validation(args.validate, args.seed, conds, args.defects, cfg, progress)
        res["wall_seconds"] = time.perf_counter() - t0
        out["validation"] = res
        if not quiet:
            _print_validation(res)
    if args.stream_minutes:
        t0 = time.perf_counter()
        rep = run_stream_validation(args.stream_minutes, args.seed, args.stream_defect, cfg)
        rep["wall_seconds"] = time.perf_counter() - t0
        out["stream"] = {k: v for k, v in rep.items() if k != "windows"} | {
            "windows": len(rep.get("windows", []))
        }
        if not quiet:
            title = (
                f"\nDrift on a {args.stream_minutes:g}-minute synthetic stream (prompt switch every minute"
            )
            title += f", {args.stream_defect} from the middle on)" if args.stream_defect else ")"
            print(title + ":")
            print(format_drift_table(rep))
    if args.json is not None:
        text = json.dumps(out, indent=2, default=float)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as fh:
                fh.write(text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rollcast eval", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
