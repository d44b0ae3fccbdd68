"""How much of a teacher's loss is memorised? Flow-matching loss of a run's teacher on the first
clips of its own latent dataset (the clips it trained on) and on as many fresh clips of the same
training split (rendered and encoded here with the run's VAE and prompt encoder, another seed),
at fixed noise levels with fixed noise (`bench.motion_probe.fixed_noise_loss`), with every latent
frame noisy and with a clean prefix. A ratio fresh / trained above 1 means the teacher fits its
dataset's clips better than the world; comparing two teachers' fresh columns (the fresh clips
depend only on --seed, --clips, the clip length and the run's VAE and prompt encoder) tells which
fits the world better.

    .venv/bin/python -m bench.teacher_gap --run runs/tiny [--clips 1024] [--json out.json]

Numbers in docs/BENCHMARKS.md, "Sixteenth session: a teacher on 12,000 fresh clips".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from bench.motion_probe import fixed_noise_loss
from engine.train.clips import ClipConfig
from engine.train.latents import LatentDataset, encode_clips
from engine.train.models import load_dit, load_vae, run_text_encoder, stage_file, training_preset


def fresh_clips(run: Path, trained: LatentDataset, n: int, seed: int) -> LatentDataset:
    """`n` clips of the training split that the run's dataset does not hold (seed `seed`), with
    the dataset's clip length and the teacher stage's share of two-object scenes."""
    config = training_preset("tiny")
    vae = load_vae(config, stage_file(run, "vae", "vae.safetensors"))
    stage = json.loads((run / "teacher" / "config.json").read_text())
    frames = trained.latents.shape[1] * config.vae.temporal_stride
    clips = ClipConfig(config.width, config.height, config.fps, frames, stage.get("two_object_prob", 0.3))
    with tqdm(total=n, desc="encode fresh clips", dynamic_ncols=True) as bar:
        return encode_clips(vae, run_text_encoder(config, run), clips, n, seed, progress=bar.update)


def gap(run: Path, clips: int, seed: int, sigmas: list[float], prefixes: list[int]) -> list[dict]:
    dit = load_dit(training_preset("tiny"), stage_file(run, "teacher", "teacher.safetensors")).eval()
    trained = LatentDataset.load(run / "teacher")
    if trained is None:
        raise FileNotFoundError(f"{run}/teacher has no latent dataset: run the teacher stage first")
    seen = trained.batch(torch.arange(min(clips, len(trained))))
    fresh = fresh_clips(run, trained, len(seen[0]), seed).batch(torch.arange(len(seen[0])))
    rows = []
    for prefix in prefixes:
        for sigma in sigmas:
            a = fixed_noise_loss(dit, seen[0], seen[1], sigma, prefix)
            b = fixed_noise_loss(dit, fresh[0], fresh[1], sigma, prefix)
            rows.append({"prefix": prefix, "sigma": sigma, "trained": a, "fresh": b, "ratio": b / a})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.teacher_gap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run directory with vae/, text/, teacher/")
    parser.add_argument("--clips", type=int, default=1024, help="clips of each kind")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the fresh clips")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 0.6, 0.8, 0.95], help="noise levels")
    parser.add_argument("--prefix", type=int, nargs="+", default=[0, 3], help="clean leading latent frames")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = gap(args.run, args.clips, args.seed, args.sigmas, args.prefix)
    print(f"{'prefix':>6} {'sigma':>5} {'trained':>8} {'fresh':>8} {'ratio':>6}")
    for r in rows:
        losses = f"{r['trained']:>8.4f} {r['fresh']:>8.4f} {r['ratio']:>6.3f}"
        print(f"{r['prefix']:>6} {r['sigma']:>5.2f} {losses}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
