"""`rollcast api`: the HTTP/WebSocket front end, for deployments with Redis and separate workers.

Every option defaults to its ``ROLLCAST_*`` environment variable (server/settings.py).  It
refuses to listen beyond loopback without API keys unless ``--allow-insecure`` is given.
SIGTERM: `/readyz` turns 503 and the server keeps serving for ``shutdown_grace_s`` (so load
balancers take it out of rotation), then shuts down; Ctrl-C stops at once.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from server.commands.options import add_options, run_command

HELP = "run the HTTP/WebSocket front end (needs Redis; workers run separately)"

log = logging.getLogger("rollcast.api")

OPTIONS = (
    "host",
    "port",
    "redis_url",
    "key_prefix",
    "public_url",
    "allow_insecure",
    "log_level",
    "log_format",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)


def run(args: argparse.Namespace) -> int:
    return run_command("api", args, OPTIONS, _main, needs_redis=True, listens=True)


async def _main(settings: Any) -> int:
    from server.api import create_app
    from server.api.runner import broker_for, http_server

    broker = broker_for(settings, settings.redis_url)
    try:
        if not await broker.ping():
            log.warning("Redis at %s does not answer; /readyz is 503 until it does", settings.redis_url)
        await http_server(settings, create_app(settings, broker)).serve()
    finally:
        await broker.close()
    return 0
