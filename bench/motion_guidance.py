"""Does motion guidance make a teacher's samples move the way the prompt says? Samples a run's
teacher on held-out prompts with the same noise at several motion-guidance scales
(`engine.train.flow.Guidance`: v_u + g (v_c - v_u) + m (v_c - v_reversed)) and scores them with
the analytic evaluator: overall fidelity, motion accuracy and the detected speed along the
prompted direction (frame widths per second; the world moves at 0.12-0.18).

    .venv/bin/python -m bench.motion_guidance --run runs/tiny [--prompts 24] [--scales 0 2 4 8]

Numbers in docs/BENCHMARKS.md, "Motion diagnosis".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.teacher_args import add_teacher_sampling_args
from engine.eval import evaluate_videos
from engine.train.evaluate import eval_prompts, teacher_videos
from engine.train.models import load_dit, load_vae, run_text_encoder, stage_file, training_preset


def sweep(
    run: Path, prompts: int, scales: list[float], guidance: float, steps: int, frames: int
) -> list[dict]:
    config = training_preset("tiny")
    teacher = load_dit(config, stage_file(run, "teacher", "teacher.safetensors")).eval()
    vae = load_vae(config, stage_file(run, "vae", "vae.safetensors"))
    text = run_text_encoder(config, run)
    chosen = eval_prompts(prompts)
    rows = []
    for scale in scales:
        start = time.perf_counter()
        videos = teacher_videos(
            teacher,
            vae,
            text,
            chosen,
            frames,
            (config.latent_height, config.latent_width),
            guidance=guidance,
            motion_guidance=scale,
            steps=steps,
            shift=config.sampler.shift,
        )
        res = evaluate_videos(list(zip(videos, chosen, strict=True)), fps=config.fps)
        along = res["speed_along_prompt"]
        rows.append(
            {
                "motion_guidance": scale,
                "overall": res["overall"],
                "accuracy": res["accuracy"],
                "along_mean": along["mean"],
                "along_median": along["median"],
                "along_objects": along["objects"],
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.motion_guidance", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--prompts", type=int, default=24, help="held-out prompts (same noise per scale)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 2.0, 4.0, 8.0], help="motion scales")
    add_teacher_sampling_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = sweep(args.run, args.prompts, args.scales, args.guidance, args.steps, args.frames)
    print(f"{'motion g':>8} {'overall':>7} {'motion':>6} {'along mean':>10} {'median':>7} {'objs':>4}")
    for r in rows:
        print(
            f"{r['motion_guidance']:>8.1f} {r['overall']:>7.3f} {r['accuracy']['motion']:>6.3f} "
            f"{r['along_mean']:>+10.3f} {r['along_median']:>+7.3f} {r['along_objects']:>4}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
