"""How steady is an object from one latent frame to the next? For every held-out prompt with one
object on a plain black background, the student's 2-second clip (a real session) and the world's
own clip of that prompt passed through the VAE (encode, decode: what a perfect DiT would give).
In each, the object is the set of pixels whose brightest channel exceeds 80; its centroid and
area are taken per frame, and the steps between consecutive frames are split into those inside
a latent frame (the 4 pixel frames decoded from one latent frame) and those across latent
frames. An object that jumps or pulses between latent frames shows large steps across them:
the evaluator reads such a wobble as bouncing, and a pulse as growing or shrinking. `--run`
adds a training run's teacher: its joint guided samples of its training clip length (all latent
frames from noise together, `--steps` Euler steps, one row per `--guidance` scale; 16 and
CFG 4 by default), the distribution the student is distilled towards.

    .venv/bin/python -m bench.latent_steps [--weights DIR ...] [--run RUN [--guidance 1 4]] [--seconds 2]

Numbers in docs/BENCHMARKS.md, "Motion diagnosis".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench.world_clips import encode_world_clip
from engine.data.eval_prompts import EvalPrompt
from engine.data.render import RenderConfig
from engine.data.tensors import from_model_output
from engine.eval.model_eval import generate_clip, heldout_prompts
from engine.generator import Generator
from engine.train.flow import Guidance, euler_sample
from engine.train.models import load_dit, load_vae, run_text_encoder, stage_file, training_preset

BRIGHT = 80  # a plain black background stays far below this in every channel


def object_steps(frames: np.ndarray, stride: int) -> dict[str, np.ndarray] | None:
    """Per-frame-pair centroid step (px) and |d log area| of the one bright object in uint8
    frames [T, H, W, 3], split by whether the pair lies inside one latent frame of `stride`
    pixel frames or across two; None if the object is missing from a frame."""
    mask = frames.max(axis=3) > BRIGHT
    area = mask.sum(axis=(1, 2)).astype(np.float64)
    if (area < 20).any():
        return None
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    cx = (mask * xs).sum(axis=(1, 2)) / area
    cy = (mask * ys).sum(axis=(1, 2)) / area
    step = np.hypot(np.diff(cx), np.diff(cy))
    pulse = np.abs(np.diff(np.log(area)))
    across = (np.arange(1, len(frames)) % stride) == 0  # pair (t-1, t) with t a latent frame's first
    return {
        "within_step": step[~across],
        "within_pulse": pulse[~across],
        "across_step": step[across],
        "across_pulse": pulse[across],
    }


def summarise(clips: list[np.ndarray], stride: int) -> dict[str, float]:
    """Median / mean / p90 of each step kind over the clips that keep their object throughout."""
    parts = [s for c in clips if (s := object_steps(c, stride))]
    row: dict[str, float] = {"clips": float(len(parts))}
    for key in ("within_step", "across_step", "within_pulse", "across_pulse"):
        v = np.concatenate([p[key] for p in parts])
        row[f"{key}_median"] = float(np.median(v))
        row[f"{key}_mean"] = float(np.mean(v))
        row[f"{key}_p90"] = float(np.percentile(v, 90))
    return row


def single_objects_on_black(prompts: list[EvalPrompt]) -> list[EvalPrompt]:
    def plain_black(p: EvalPrompt) -> bool:
        bg = p.spec.background
        return bg is not None and bg.colour == "black" and bg.texture == "plain"

    return [p for p in prompts if len(p.spec.objects) == 1 and plain_black(p)]


@torch.no_grad()
def world_round_trip(
    gen: Generator, prompts: list[EvalPrompt], frames: int, seed: int, clip: bool = True
) -> list[np.ndarray]:
    """The world's scene of each prompt (`clip`: by the training clips' placement rules), through
    the VAE (encode, decode): uint8 [frames, H, W, 3] each."""
    rng = np.random.default_rng(seed)
    render = RenderConfig(num_frames=frames, fps=gen.config.fps)
    vae = gen.vae.float()
    out = []
    for p in prompts:
        z = encode_world_clip(vae, p.spec, rng, render, clip=clip)
        out.append(from_model_output(vae.decode(z)[0]))
    return out


@torch.no_grad()
def teacher_samples(
    run: Path, prompts: list[EvalPrompt], seed: int, guidance: float = 4.0, steps: int = 16
) -> list[np.ndarray]:
    config = training_preset("tiny")
    latent_frames = json.loads((run / "teacher" / "config.json").read_text())["clip_latent_frames"]
    teacher = load_dit(config, stage_file(run, "teacher", "teacher.safetensors")).eval()
    vae = load_vae(config, stage_file(run, "vae", "vae.safetensors"))
    text = run_text_encoder(config, run)
    g = torch.Generator().manual_seed(seed)
    shape = (1, latent_frames, config.dit.in_dim, config.latent_height, config.latent_width)
    out = []
    for p in prompts:
        guide = Guidance.of(teacher, text.encode([p.text]), guidance)
        x0, _ = euler_sample(
            teacher, torch.randn(shape, generator=g), guide, steps=steps, shift=config.sampler.shift
        )
        out.append(from_model_output(vae.decode(x0.transpose(1, 2))[0]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latent_steps", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--weights",
        type=Path,
        action="append",
        help="checkpoint file or directory (repeat; default: shipped)",
    )
    parser.add_argument("--run", type=Path, default=None, help="also sample this run's teacher")
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="+",
        default=[4.0],
        help="the teacher's classifier-free guidance scales (one row each)",
    )
    parser.add_argument("--steps", type=int, default=16, help="the teacher's Euler steps")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts = single_objects_on_black(heldout_prompts())
    rows: dict[str, dict[str, float]] = {}
    for weights in args.weights or [None]:
        gen = Generator.from_preset("tiny", weights=weights)
        stride = gen.config.vae.temporal_stride
        frames = round(args.seconds * gen.config.fps)
        if not rows:
            world = world_round_trip(gen, prompts, frames, args.seed)
            rows["world via VAE"] = summarise(world, stride)
        clips = [generate_clip(gen, p.text, frames, args.seed + i) for i, p in enumerate(prompts)]
        rows[str(weights or "shipped")] = summarise(clips, stride)
    for scale in args.guidance if args.run else []:
        clips = teacher_samples(args.run, prompts, args.seed, scale, args.steps)
        rows[f"teacher {args.run} cfg {scale:g}"] = summarise(clips, stride)
    print(f"{len(prompts)} held-out prompts, one object on plain black; steps between consecutive frames")
    print(
        f"{'source':>28} {'clips':>5} | step px inside / across a latent frame | |dlog area| inside / across"
    )
    for name, r in rows.items():
        steps = " / ".join(
            f"{r[f'{k}_step_median']:.2f} {r[f'{k}_step_p90']:.2f}" for k in ("within", "across")
        )
        pulse = " / ".join(
            f"{r[f'{k}_pulse_median']:.3f} {r[f'{k}_pulse_mean']:.3f}" for k in ("within", "across")
        )
        print(f"{name[-28:]:>28} {int(r['clips']):>5} | median p90: {steps} | median mean: {pulse}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
