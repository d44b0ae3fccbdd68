"""Does a teacher use each part of the prompt? Flow-matching loss of a run's teacher on its own
training clips with the true prompt rows and with one attribute group altered, at fixed noise
levels and fixed noise: every motion reversed (left<->right, up<->down, growing<->shrinking,
diagonals likewise), the colour swapped, or no prompt at all. A gap near zero means the model
ignores that part of the prompt. `--prefix 1` also runs each level with the first latent frame
clean (the causal student's situation, `clean_prefix_fraction` in the teacher stage).

    .venv/bin/python -m bench.motion_probe --run runs/tiny [--clips 96] [--prefix 0 1] [--json out.json]

Numbers in docs/BENCHMARKS.md, "Motion diagnosis".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from engine.data.vocab import COLOUR_NAMES
from engine.model.dit import CausalDiT
from engine.text.schema import permute_group, reverse_motion
from engine.train.latents import LatentDataset
from engine.train.models import load_dit, stage_file, training_preset


def variants(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    colour = [(i + 5) % len(COLOUR_NAMES) for i in range(len(COLOUR_NAMES))]  # every colour changes
    return {
        "true": rows,
        "motion_reversed": reverse_motion(rows),
        "colour_swapped": permute_group(rows, "colour", colour),
        "no_prompt": torch.zeros_like(rows),
    }


@torch.no_grad()
def fixed_noise_loss(
    dit: CausalDiT, x0: torch.Tensor, rows: torch.Tensor, sigma: float, prefix: int, batch: int = 32
) -> float:
    """Mean squared flow error over the noisy frames of clips x0 [N, F, C, h, w] with prompt rows
    [N, R, W] at noise level `sigma`, the first `prefix` latent frames clean; the noise is the same
    on every call with clips of the same shape."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    s = torch.full(x0.shape[:2], sigma)
    s[:, :prefix] = 0.0
    x_t = (1.0 - s)[..., None, None, None] * x0 + s[..., None, None, None] * eps
    target = eps - x0
    err = 0.0
    for i in range(0, len(x0), batch):
        sl = slice(i, i + batch)
        pred = dit(x_t[sl], s[sl] * 1000.0, dit.encode_prompt(rows[sl]))
        err += float((pred - target[sl])[:, prefix:].pow(2).sum())
    return err / target[:, prefix:].numel()


def probe(run: Path, clips: int, sigmas: list[float], prefixes: list[int]) -> list[dict]:
    dit = load_dit(training_preset("tiny"), stage_file(run, "teacher", "teacher.safetensors")).eval()
    data = LatentDataset.load(run / "teacher")
    if data is None:
        raise FileNotFoundError(f"{run}/teacher has no latent dataset: run the teacher stage first")
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:clips]
    x0, rows, _ = data.batch(index)  # [N, F, C, h, w], [N, R, W]
    results = []
    for prefix in prefixes:
        for sigma in sigmas:
            row: dict = {"prefix": prefix, "sigma": sigma}
            for name, cond in variants(rows).items():
                row[name] = fixed_noise_loss(dit, x0, cond, sigma, prefix)
            results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.motion_probe", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--run", type=Path, required=True, help="run directory with teacher/ (weights + latents)"
    )
    parser.add_argument("--clips", type=int, default=96, help="training clips to score")
    parser.add_argument(
        "--sigmas", type=float, nargs="+", default=[0.95, 0.85, 0.7, 0.5], help="noise levels"
    )
    parser.add_argument("--prefix", type=int, nargs="+", default=[0, 1], help="clean leading latent frames")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = probe(args.run, args.clips, args.sigmas, args.prefix)
    print(f"{'prefix':>6} {'sigma':>5} {'true':>7}  gap: motion reversed / colour swapped / no prompt")
    for r in rows:
        gaps = [100.0 * (r[k] / r["true"] - 1.0) for k in ("motion_reversed", "colour_swapped", "no_prompt")]
        print(
            f"{r['prefix']:>6} {r['sigma']:>5.2f} {r['true']:>7.4f}  "
            + " / ".join(f"{g:+6.2f}%" for g in gaps)
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
