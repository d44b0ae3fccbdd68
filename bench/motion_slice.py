"""Can the tiny DiT learn motion direction at all? Prepares a run directory whose teacher
latent dataset is a motion-only slice of the world: one object of one colour, shape and size on
a plain black background, moving in one of a few ways (default left, right or still), with the
training split's stream rules and caption templates. The prompt then differs between clips
only in its motion words, so a teacher trained on it (the normal `teacher` stage, which finds the
cached dataset) must use them or learn nothing; `bench.motion_probe` measures whether it did.

    .venv/bin/python -m bench.motion_slice --run runs/slice [--clips 2000] [--motions left right still]
    .venv/bin/rollcast train teacher --out runs/slice --set dataset_clips=2000 --set image_fraction=0 ...
    .venv/bin/python -m bench.motion_probe --run runs/slice

Numbers in docs/BENCHMARKS.md, "Motion diagnosis".
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.data.splits import is_heldout_triple
from engine.data.vocab import COLOUR_NAMES, MOTIONS, SHAPES
from engine.data.world import BackgroundSpec, ObjectSpec, SceneSpec
from engine.train.clips import ClipConfig
from engine.train.latents import encode_clips
from engine.train.models import load_vae, run_text_encoder, training_preset
from engine.train.stages.teacher import TeacherStageConfig


def slice_object(motions: list[str]) -> tuple[str, str]:
    """The first (colour, shape) whose triple with every motion is in the training split."""
    for colour in COLOUR_NAMES:
        for shape in SHAPES:
            if not any(is_heldout_triple(colour, shape, m) for m in motions):
                return colour, shape
    raise ValueError(f"no colour and shape trains with every one of {motions}")


def prepare(run: Path, weights: Path, clips: int, motions: list[str], seed: int) -> str:
    """Copies the text head and VAE of `weights` into the run and writes the sliced dataset."""
    for stage, name in (("text", "text.safetensors"), ("vae", "vae.safetensors")):
        (run / stage).mkdir(parents=True, exist_ok=True)
        shutil.copy(weights / name, run / stage / name)
    config = training_preset("tiny")
    vae = load_vae(config, run / "vae" / "vae.safetensors")
    text = run_text_encoder(config, run)
    colour, shape = slice_object(motions)

    def scene(rng: np.random.Generator) -> SceneSpec:
        motion = motions[int(rng.integers(len(motions)))]
        return SceneSpec((ObjectSpec(colour, shape, motion, "medium"),), BackgroundSpec("black", "plain"))

    frames = TeacherStageConfig.clip_latent_frames * config.vae.temporal_stride
    clip_cfg = ClipConfig(config.width, config.height, config.fps, frames, two_object_prob=0.0)
    with tqdm(total=clips, desc="encode slice", dynamic_ncols=True) as bar:
        data = encode_clips(vae, text, clip_cfg, clips, seed, progress=bar.update, scene=scene)
    (run / "teacher").mkdir(exist_ok=True)
    data.save(run / "teacher")
    return f"{colour} {shape}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.motion_slice", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--run", type=Path, required=True, help="run directory to prepare")
    parser.add_argument("--weights", type=Path, default=Path("engine/weights/tiny"), help="text + VAE source")
    parser.add_argument("--clips", type=int, default=2000, help="clips in the latent dataset")
    parser.add_argument("--motions", nargs="+", default=["left", "right", "still"], choices=MOTIONS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    what = prepare(args.run, args.weights, args.clips, args.motions, args.seed)
    print(f"{args.run}/teacher: {args.clips} clips of a medium {what} on black, motions {args.motions}")
    print(f"next: rollcast train teacher --out {args.run} --set dataset_clips={args.clips} ...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
