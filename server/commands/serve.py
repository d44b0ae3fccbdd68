"""`rollcast serve`: the embedded default — API + one worker in one process, no Redis.

The broker is in-process (`MemoryBroker`); the worker runs in the same event loop as the
API (its engine thread beside it) and starts and stops with the app.  Once the server
listens and the worker is ready it prints ``Rollcast is running at http://HOST:PORT``.
Same listening rule as `rollcast api`: beyond loopback only with API keys or
``--allow-insecure``.  SIGTERM drains the worker, then exits; Ctrl-C exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from server.commands.options import add_options, run_command

HELP = "run API + worker in one process (embedded default, no Redis)"

log = logging.getLogger("rollcast.serve")

READY_WAIT_S = 600.0  # how long to wait for the worker before announcing anyway

OPTIONS = (
    "host",
    "port",
    "preset",
    "weights",
    "device",
    "sparsity",
    "torch_threads",
    "max_sessions",
    "public_url",
    "allow_insecure",
    "log_level",
    "log_format",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)


def display_url(host: str, port: int) -> str:
    """The URL to open in a browser: wildcard addresses become the loopback one."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def run(args: argparse.Namespace) -> int:
    return run_command("serve", args, OPTIONS, _main, listens=True)


async def _main(settings: Any) -> int:
    from server.api import create_app
    from server.api.runner import broker_for, http_server
    from server.worker import Worker

    broker = broker_for(settings, None)  # embedded: always in-process
    try:
        worker = Worker(settings, broker)
        server = http_server(settings, create_app(settings, broker, worker=worker))
        announcer = asyncio.create_task(_announce(server, worker, settings))
        try:
            await server.serve()
        finally:
            announcer.cancel()
    finally:
        await broker.close()
    return 0


async def _announce(server: Any, worker: Any, settings: Any) -> None:
    """Print the URL once the server listens and the worker is ready."""
    while not server.started:
        await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WAIT_S
    while not worker.ready and loop.time() < deadline:
        await asyncio.sleep(0.1)
    url = display_url(settings.host, server.bound_port() or settings.port)
    print(f"Rollcast is running at {url}", flush=True)
    log.info("ready", extra={"event": "ready", "url": url})
