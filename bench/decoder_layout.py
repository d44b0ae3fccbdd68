"""What the tiny VAE decoder's channels-last activations buy: `bench.realtime`'s runs (a fresh
session each: first frame, steady-state frames/s, decode time per chunk), alternating the
decoder's memory format between NCHW and channels-last (NHWC) run by run on one generator, so
both layouts see the same machine state. Also checks that both decode a chunk alike.

    .venv/bin/python -m bench.decoder_layout [--rounds 5] [--chunks 16] [--encode] [--json out.json]

Numbers in docs/BENCHMARKS.md, "Tiny model: real time on 2 CPU cores".
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from bench.cli_args import cache_overrides, parse_stream_args
from bench.realtime import PROMPTS, one_run
from engine.generator import Generator
from engine.vae import StreamingDecoder
from engine.vae.golden import relative_error

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def layout_error(gen: Generator) -> float:
    """Relative difference of one random latent chunk decoded in the two layouts."""
    cfg = gen.config
    stride = gen.vae.config.spatial_stride
    z = torch.randn(1, cfg.vae.z_dim, cfg.sampler.frames_per_chunk, cfg.height // stride, cfg.width // stride)
    out = {}
    for name, fmt in LAYOUTS.items():
        gen.vae.decoder.memory_format = fmt
        out[name] = StreamingDecoder(gen.vae, frames_per_pass=None).decode(z)
    return relative_error(out["channels_last"], out["nchw"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.decoder_layout", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--weights", default=None, help="weights directory (default: shipped)")
    parser.add_argument("--rounds", type=int, default=5, help="runs per layout, alternating")
    parser.add_argument("--chunks", type=int, default=16, help="steady-state chunks timed per run")
    parser.add_argument("--encode", action="store_true", help="include H.264 fMP4 encoding")
    args = parse_stream_args(parser, argv)
    gen = Generator.from_preset("tiny", weights=args.weights, overrides=cache_overrides(args.cache))
    error = layout_error(gen)
    runs: dict[str, list[dict]] = {name: [] for name in LAYOUTS}
    for i in range(args.rounds + 1):  # round 0 warms both layouts up and is not counted
        for name, fmt in LAYOUTS.items():
            gen.vae.decoder.memory_format = fmt
            chunks = args.chunks if i else 2
            run = one_run(gen, f"{PROMPTS[i % len(PROMPTS)]} #{i}", i, chunks, args.encode)
            if i:
                runs[name].append(run)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    ratios = [a["decode_s"] / b["decode_s"] for a, b in zip(runs["nchw"], runs["channels_last"], strict=True)]
    print(f"tiny decoder layouts, {args.rounds} alternating rounds, {args.threads} threads")
    print(f"{'layout':>14} {'first ms':>9} {'steady fps':>11} {'chunk ms':>9} {'decode ms':>10}")
    for name, m in med.items():
        print(
            f"{name:>14} {m['ttff_s'] * 1e3:9.1f} {m['steady_fps']:11.1f} {m['chunk_s'] * 1e3:9.1f}"
            f" {m['decode_s'] * 1e3:10.1f}"
        )
    print(
        "decode nchw / channels_last per round: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f" (median {statistics.median(ratios):.2f}); relative difference {error:.1e}"
    )
    if args.json:
        result = {"median": med, "runs": runs, "decode_ratio": ratios, "relative_difference": error}
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
