"""Command-line options shared by the benches that sample a teacher."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """--steps, --frames, --threads and --json."""
    parser.add_argument("--steps", type=int, default=16, help="Euler steps")
    parser.add_argument("--frames", type=int, default=6, help="latent frames per sample")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")


def add_teacher_sampling_args(parser: argparse.ArgumentParser) -> None:
    """--run, --guidance and the sampling options (`add_sampling_args`)."""
    parser.add_argument("--run", type=Path, required=True, help="run directory with text/, vae/, teacher/")
    parser.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    add_sampling_args(parser)
