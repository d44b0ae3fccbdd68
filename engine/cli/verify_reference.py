"""`rollcast verify-reference FILE.safetensors [...]`: compare the engine with golden tensors."""

from __future__ import annotations

import argparse
import sys

HELP = "check the engine against golden tensors of the public Self Forcing implementation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE.safetensors",
        help="golden files (a NAME.json beside each describes its configuration)",
    )
    parser.add_argument("--no-vae", action="store_true", help="skip the VAE section")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from engine.golden import format_report, verify_golden

    if args.threads:
        torch.set_num_threads(args.threads)
    ok = True
    for path in args.files:
        try:
            report = verify_golden(path, vae=not args.no_vae)
        except (OSError, KeyError, ValueError) as exc:
            print(f"{path}: cannot verify: {exc}", file=sys.stderr)
            ok = False
            continue
        format_report(report, path)
        ok &= report.ok
    return 0 if ok else 1
