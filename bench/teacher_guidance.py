"""Where does classifier-free guidance put the objects? Samples the tiny teacher (the shipped one,
or a run's) on the held-out prompts with one object on plain black, jointly over its training
clip (all latent frames from noise, Euler), with the same noise at every guidance setting, and
scores the samples with the analytic evaluator: fidelity, the per-attribute table and
`at_border`, the share of detected objects cut by the frame border in most of their frames
(the world's clips have none). One row per pair of a CFG scale and a guidance rescale
(`engine.train.flow.Guidance`; 0 = plain CFG).

    .venv/bin/python -m bench.teacher_guidance [--run RUN] [--scales 1 4] [--rescales 0 1] [--seeds 0 1]

Numbers in docs/BENCHMARKS.md, "Fourteenth session: guidance rescale".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.latent_steps import single_objects_on_black
from bench.teacher_args import add_sampling_args
from engine.eval import evaluate_videos
from engine.eval.model_eval import heldout_prompts
from engine.generator import WEIGHTS_DIR
from engine.text import build_text_encoder
from engine.train.evaluate import teacher_videos
from engine.train.models import load_dit, load_vae, training_preset

ATTRIBUTES = ("count", "colour", "shape", "size", "motion")


def weight_files(run: Path | None) -> dict[str, Path]:
    """The teacher, VAE and text head: a run's stage outputs, or the shipped `tiny` files."""
    if run is None:
        shipped = WEIGHTS_DIR / "tiny"
        return {k: shipped / f"{k}.safetensors" for k in ("teacher", "vae", "text")}
    return {k: run / k / f"{k}.safetensors" for k in ("teacher", "vae", "text")}


def sweep(
    files: dict[str, Path],
    settings: list[tuple[float, float]],
    seeds: list[int],
    steps: int,
    frames: int,
) -> list[dict]:
    config = training_preset("tiny")
    teacher = load_dit(config, files["teacher"]).eval()
    vae = load_vae(config, files["vae"])
    text = build_text_encoder(config.replace(text={"path": str(files["text"])}))
    prompts = [p.text for p in single_objects_on_black(heldout_prompts())]
    rows = []
    for scale, rescale in settings:
        start = time.perf_counter()
        items = []
        for seed in seeds:
            videos = teacher_videos(
                teacher,
                vae,
                text,
                prompts,
                frames,
                (config.latent_height, config.latent_width),
                guidance=scale,
                guidance_rescale=rescale,
                steps=steps,
                shift=config.sampler.shift,
                seed=seed,
            )
            items += list(zip(videos, prompts, strict=True))
        res = evaluate_videos(items, fps=config.fps)
        rows.append(
            {
                "guidance": scale,
                "rescale": rescale,
                "clips": len(items),
                "overall": res["overall"],
                "at_border": res["at_border"],
                "accuracy": {k: res["accuracy"][k] for k in ATTRIBUTES},
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.teacher_guidance", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--run", type=Path, default=None, help="run directory (default: shipped weights)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="CFG scales")
    parser.add_argument("--rescales", type=float, nargs="+", default=[0.0, 1.0], help="guidance rescales")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="noise seeds (same per row)")
    add_sampling_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [(s, r) for s in args.scales for r in args.rescales if s != 1.0 or r == args.rescales[0]]
    rows = sweep(weight_files(args.run), settings, args.seeds, args.steps, args.frames)
    header = " ".join(f"{k:>6}" for k in ATTRIBUTES)
    print(f"{'cfg':>4} {'rescale':>7} {'clips':>5} {'overall':>7} {'border':>6} | {header}")
    for r in rows:
        acc = " ".join(f"{r['accuracy'][k]:>6.3f}" for k in ATTRIBUTES)
        print(
            f"{r['guidance']:>4g} {r['rescale']:>7g} {r['clips']:>5} {r['overall']:>7.3f} "
            f"{r['at_border']:>6.3f} | {acc}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
