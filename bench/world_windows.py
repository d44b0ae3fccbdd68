"""What does the evaluator give the world itself later in a stream? The ceiling for
`rollcast eval --later` and `bench.motion_windows`: every held-out prompt's scene (seed 0's
scenes, as there) rendered as one stream by the world's own motion laws, and the 2-second
windows starting at `--starts` seconds scored as the model's are. `--placement clip` places
objects by the training clips' rules (moving objects stay inside the frame for the clip's
length; engine/data/layout.py), `free` as an endless stream does: translations leave the frame
and wrap around, so a later window can hold an object cut by the border or one that leaves and
re-enters. `--vae` passes each stream through the tiny VAE (encode, decode) first, as a perfect
DiT's stream would come out.

    .venv/bin/python -m bench.world_windows [--placement free] [--starts 0 3 6] [--vae]

Numbers in docs/BENCHMARKS.md, "Tiny model: prompt fidelity and drift".
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.latent_steps import world_round_trip
from engine.data.render import RenderConfig, make_scene, render_scene
from engine.eval.fidelity import ATTRIBUTES
from engine.eval.model_eval import heldout_prompts
from engine.eval.report import evaluate_videos
from engine.generator import Generator

WINDOW_S = 2.0


def world_streams(seconds: float, clip: bool, vae: bool, seed: int = 0) -> tuple[list[np.ndarray], float]:
    """One stream per held-out prompt (uint8 [T, H, W, 3]) and the frame rate."""
    gen = Generator.from_preset("tiny")
    frames = round(seconds * gen.config.fps)
    prompts = heldout_prompts()
    if vae:
        return world_round_trip(gen, prompts, frames, seed, clip=clip), gen.config.fps
    render = RenderConfig(num_frames=frames, fps=gen.config.fps)
    rng = np.random.default_rng(seed)
    return [render_scene(make_scene(p.spec, rng, render, clip=clip), render) for p in prompts], render.fps


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.world_windows", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--placement", choices=("clip", "free"), default="free")
    parser.add_argument("--starts", type=float, nargs="+", default=[0.0, 3.0, 6.0], help="window starts (s)")
    parser.add_argument("--vae", action="store_true", help="through the tiny VAE (encode, decode)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts = heldout_prompts()
    streams, fps = world_streams(max(args.starts) + WINDOW_S, args.placement == "clip", args.vae)
    frames = round(WINDOW_S * fps)
    through = ", through the VAE" if args.vae else ""
    print(f"{len(prompts)} held-out prompts, {args.placement} placement{through}")
    print(f"{'from':>5} {'fidelity':>8} " + " ".join(f"{a:>6}" for a in ATTRIBUTES))
    for start in args.starts:
        lo = round(start * fps)
        rep = evaluate_videos(
            [(s[lo : lo + frames], p.text) for s, p in zip(streams, prompts, strict=True)], fps=fps
        )
        cells = " ".join(f"{rep['accuracy'][a]:>6.1%}" for a in ATTRIBUTES)
        print(f"{start:>4g}s {rep['overall']:>8.1%} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
