"""`rollcast worker`: a generation worker that pulls sessions from Redis.

Every option defaults to its ``ROLLCAST_*`` environment variable (see server/settings.py), so
a container only needs ``ROLLCAST_REDIS_URL``. SIGTERM (and the first Ctrl-C) drains: no new
sessions, bounded sessions that end within ``--drain-timeout`` are finished, the others are
handed back to other workers with a snapshot; a second Ctrl-C hands everything back at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from server.commands.options import add_options, run_command

HELP = "run a generation worker that pulls sessions from Redis"

log = logging.getLogger("rollcast.worker")

OPTIONS = (
    "redis_url",
    "key_prefix",
    "preset",
    "weights",
    "device",
    "sparsity",
    "torch_threads",
    "max_sessions",
    "metrics_port",
    "worker_id",
    "heartbeat_interval_s",
    "heartbeat_ttl_s",
    "drain_timeout_s",
    "snapshot_every_chunks",
    "log_level",
    "log_format",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)


def run(args: argparse.Namespace) -> int:
    return run_command("worker", args, OPTIONS, _main, needs_redis=True)


async def _main(settings: Any) -> int:
    from server.api.runner import broker_for
    from server.metrics import REGISTRY
    from server.worker import Worker

    broker = broker_for(settings, settings.redis_url)
    try:
        if not await broker.ping():
            raise ConnectionError("no answer")
    except Exception as exc:
        print(f"rollcast worker: cannot reach Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        await broker.close()
        return 1
    if settings.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, registry=REGISTRY)
        log.info("metrics on :%d/metrics", settings.metrics_port, extra={"event": "metrics"})
    worker = Worker(settings, broker)
    loop = asyncio.get_running_loop()
    signals = 0
    stopping: set[asyncio.Task[None]] = set()

    def on_signal(signame: str) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: draining", signame, extra={"event": "signal", "worker_id": worker.worker_id})
            worker.request_drain()
        else:
            log.info("%s again: handing everything back", signame, extra={"event": "signal"})
            task = loop.create_task(worker.stop())
            stopping.add(task)
            task.add_done_callback(stopping.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await broker.close()
    return 0
