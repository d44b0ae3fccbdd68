"""Options and error reporting shared by the client commands."""

from __future__ import annotations

import argparse
import os
import sys

from rollcast_client.client import default_base_url
from rollcast_client.errors import InvalidRequest, RollcastError


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=None,
        help=f"server base URL (env ROLLCAST_SERVER, default {default_base_url()})",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="API key (env ROLLCAST_API_KEY); needed when the server has keys configured",
    )


def api_key(args: argparse.Namespace) -> str | None:
    return args.api_key or os.environ.get("ROLLCAST_API_KEY") or None


def report_error(command: str, exc: RollcastError) -> int:
    """Print a one-line error and return the exit code: 2 for a bad request or usage (the
    server's 4xx or a check made here), 1 for anything else."""
    print(f"rollcast {command}: {exc}", file=sys.stderr)
    client_side = isinstance(exc, InvalidRequest) or (exc.status is not None and 400 <= exc.status < 500)
    return 2 if client_side else 1
