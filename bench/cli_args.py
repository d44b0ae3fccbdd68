"""Options shared by the benches that stream a model: `--cache FRAMES SINK` (sample with another
rolling KV cache than the preset's, so weights trained with one cache can be measured with
another), `--threads` and `--json`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch


def cache_overrides(cache: list[int] | None) -> dict[str, Any] | None:
    """`Generator.from_preset(overrides=...)` for a `--cache` value (None: the preset's cache)."""
    return {"cache": {"max_frames": cache[0], "sink_frames": cache[1]}} if cache else None


def parse_stream_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Add `--cache`, `--threads` and `--json`, parse `argv` and set torch's thread count."""
    parser.add_argument(
        "--cache",
        type=int,
        nargs=2,
        metavar=("FRAMES", "SINK"),
        default=None,
        help="rolling KV cache: latent frames in all, sink frames among them (default: the preset's)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args
