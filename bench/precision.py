"""fp32 vs bf16 autocast on the CPU for the tiny model's training work: a VAE training step, VAE
encoding (the latent dataset) and a DiT training step, interleaved (fp32, bf16, fp32, ...) so
both see the same machine load. Prints median seconds and the bf16/fp32 ratio per workload;
writes JSON with --json. This is why `mixed_precision` is on for the DiT stages and off for the
VAE stage (docs/models.md, "Training recipe").

    .venv/bin/python -m bench.precision [--runs 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from engine.model.dit import CausalDiT
from engine.presets import get_preset
from engine.vae.tiny import TinyVAE


def timed(fn: Callable[[], None], bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        fn()
    return time.perf_counter() - start


def workloads(batch: int) -> dict[str, Callable[[], None]]:
    cfg = get_preset("tiny")
    vae = TinyVAE(cfg.vae)  # type: ignore[arg-type]
    dit = CausalDiT(cfg.dit)
    video = torch.randn(batch, 3, 8, cfg.height, cfg.width)  # [B, 3, 8, 128, 128]
    latents = torch.randn(batch, 6, cfg.dit.in_dim, cfg.latent_height, cfg.latent_width)  # [B, F, C, h, w]
    text = torch.randn(batch, cfg.dit.text_len, cfg.dit.text_dim)

    def vae_step() -> None:
        recon = vae(video)[0].float()
        (recon - video).abs().mean().backward()

    def vae_encode() -> None:
        with torch.no_grad():
            vae.encode(video)

    def dit_step() -> None:
        t = torch.full((batch, latents.shape[1]), 500.0)
        pred = dit(latents, t, dit.encode_prompt(text)).float()
        pred.pow(2).mean().backward()

    return {"vae train step": vae_step, "vae encode": vae_encode, "dit train step": dit_step}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per workload and precision")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--batch", type=int, default=2, help="clips per call")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for name, fn in workloads(args.batch).items():
        timed(fn, False)  # warm-up (allocations, kernel choice)
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(args.runs):
            for label, bf16 in (("fp32", False), ("bf16", True)):
                times[label].append(timed(fn, bf16))
        med = {k: statistics.median(v) for k, v in times.items()}
        results[name] = {**{f"{k}_s": v for k, v in med.items()}, "bf16_over_fp32": med["bf16"] / med["fp32"]}
        ratio = results[name]["bf16_over_fp32"]
        print(f"{name:16s} fp32 {med['fp32']:7.2f} s   bf16 {med['bf16']:7.2f} s   bf16/fp32 {ratio:5.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
