"""`rollcast prompt ID "NEW PROMPT"`: change the prompt of a running session (REST PATCH).

The change applies from the session's next chunk; viewers see a ``prompt_applied`` event
when the first chunk with the new prompt is generated.
"""

from __future__ import annotations

import argparse
import asyncio

from rollcast_client.cli.common import add_server_arguments, api_key, report_error
from rollcast_client.client import RollcastClient
from rollcast_client.errors import RollcastError

HELP = "change the prompt of a running session"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", metavar="ID", help="the session id (printed by `rollcast watch`)")
    parser.add_argument("prompt", metavar="PROMPT", help="the new prompt")
    parser.add_argument(
        "--transition",
        choices=("cut", "recache", "blend"),
        default=None,
        help="how to switch: cut (swap the text conditioning), recache (rebuild the KV cache "
        "under the new prompt), blend (interpolate over --over-chunks); default: the session's",
    )
    parser.add_argument("--over-chunks", type=int, default=None, help="chunks a blend lasts (1-16)")
    add_server_arguments(parser)


async def _run(args: argparse.Namespace) -> int:
    async with RollcastClient(args.server, api_key=api_key(args)) as client:
        info = await client.update_session(
            args.session_id, prompt=args.prompt, transition=args.transition, over_chunks=args.over_chunks
        )
    print(f"{info.id}: {info.state}, prompt change sent (applies from the next chunk)")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except RollcastError as exc:
        return report_error("prompt", exc)
