"""`rollcast generate "PROMPT" -o out.mp4`: offline generation to an H.264 mp4."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate a video offline and write it to an H.264 mp4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="text prompt")
    parser.add_argument("-o", "--output", type=Path, default=Path("out.mp4"), help="output .mp4 path")
    parser.add_argument("--preset", default="tiny", help="model preset (tiny, test, wan-1.3b)")
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint file or directory")
    parser.add_argument("--frames", type=int, default=64, help="number of video frames to write")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--crf", type=int, default=18, help="x264 constant rate factor (quality)")
    parser.add_argument(
        "--sparsity",
        type=float,
        default=None,
        help="run sparse attention (VSA) at this sparsity, e.g. 0.9 (default: preset's setting)",
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.generator import Generator
    from engine.video_file import Mp4Writer

    if args.frames < 1:
        raise SystemExit("--frames must be at least 1")
    overrides = None if args.sparsity is None else {"sparse": {"enabled": True, "sparsity": args.sparsity}}
    gen = Generator.from_preset(args.preset, device=args.device, weights=args.weights, overrides=overrides)
    session = gen.open(args.prompt, seed=args.seed)
    cfg = gen.config
    written = 0
    with (
        Mp4Writer(args.output, cfg.width, cfg.height, cfg.fps, crf=args.crf) as writer,
        tqdm(total=args.frames, unit="frame", desc="generating") as bar,
    ):
        while written < args.frames and not session.ended:
            chunk = session.step()
            frames = chunk.frames[: args.frames - written]
            writer.write(frames)
            written += len(frames)
            bar.update(len(frames))
    session.close()
    print(f"wrote {written} frames ({cfg.width}x{cfg.height} @ {cfg.fps} fps) to {args.output}")
    return 0
