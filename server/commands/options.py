"""Command-line flags shared by `rollcast serve|api|worker`, each defined once.

Every flag maps to a `Settings` field (server/settings.py); a flag that is not given keeps the
environment's value (ROLLCAST_<FIELD>) or the default. A command lists the flags it accepts:

    add_options(parser, ("host", "port", "redis_url"))
    settings = settings_from(args, ("host", "port", "redis_url"))
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    flag: str
    setting: str  # Settings field
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)


OPTIONS: dict[str, Option] = {
    o.setting: o
    for o in (
        Option("--host", "host", "address to listen on (env ROLLCAST_HOST, default 127.0.0.1)"),
        Option(
            "--port",
            "port",
            "port to listen on (env ROLLCAST_PORT, default 8000; 0: any free)",
            {"type": int},
        ),
        Option(
            "--public-url", "public_url", "base URL clients use, for stream_url (default: from each request)"
        ),
        Option(
            "--allow-insecure",
            "allow_insecure",
            "allow listening beyond loopback without API keys (anyone could start sessions)",
            {"action": "store_true", "default": None},
        ),
        Option("--redis-url", "redis_url", "Redis URL (env ROLLCAST_REDIS_URL), e.g. redis://redis:6379/0"),
        Option(
            "--key-prefix",
            "key_prefix",
            "Redis key prefix shared by API and workers (env ROLLCAST_KEY_PREFIX)",
        ),
        Option(
            "--preset", "preset", "model preset: tiny, wan-1.3b, test (env ROLLCAST_PRESET, default tiny)"
        ),
        Option(
            "--weights", "weights", "checkpoint file or directory (default: the preset's shipped weights)"
        ),
        Option(
            "--device", "device", "torch device, e.g. cpu, cuda, cuda:1 (env ROLLCAST_DEVICE, default cpu)"
        ),
        Option(
            "--sparsity",
            "sparsity",
            "sparse attention (VSA) at this sparsity, e.g. 0.9 (env ROLLCAST_SPARSITY)",
            {"type": float},
        ),
        Option(
            "--torch-threads", "torch_threads", "PyTorch intra-op threads (default: cores - 1)", {"type": int}
        ),
        Option(
            "--max-sessions",
            "max_sessions",
            "sessions run at once, batched (env ROLLCAST_MAX_SESSIONS, default 2)",
            {"type": int},
        ),
        Option(
            "--metrics-port",
            "metrics_port",
            "serve Prometheus /metrics on this port (default: off)",
            {"type": int},
        ),
        Option("--worker-id", "worker_id", "stable worker id (default: host-pid-random)"),
        Option(
            "--heartbeat-interval",
            "heartbeat_interval_s",
            "seconds between heartbeats (default 2)",
            {"type": float},
        ),
        Option(
            "--heartbeat-ttl",
            "heartbeat_ttl_s",
            "seconds until a silent worker is presumed dead (default 10)",
            {"type": float},
        ),
        Option(
            "--drain-timeout",
            "drain_timeout_s",
            "seconds a drain may spend finishing sessions (default 20)",
            {"type": float},
        ),
        Option(
            "--snapshot-every",
            "snapshot_every_chunks",
            "snapshot each session every N chunks for failover (0: never)",
            {"type": int},
        ),
        Option(
            "--log-level", "log_level", "DEBUG, INFO, WARNING, ... (env ROLLCAST_LOG_LEVEL, default INFO)"
        ),
        Option(
            "--log-format",
            "log_format",
            "log line format (env ROLLCAST_LOG_FORMAT)",
            {"choices": ("text", "json")},
        ),
    )
}


def add_options(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for name in names:
        o = OPTIONS[name]
        parser.add_argument(o.flag, dest=o.setting, help=o.help, **o.kwargs)


def settings_from(args: argparse.Namespace, names: Sequence[str]) -> Any:
    """`Settings` from the environment with the given flags applied (ValidationError if invalid)."""
    from server.settings import Settings

    given = {OPTIONS[n].setting: getattr(args, OPTIONS[n].setting) for n in names}
    return Settings(**{k: v for k, v in given.items() if v is not None})


def load_settings(command: str, args: argparse.Namespace, names: Sequence[str]) -> Any | None:
    """`settings_from`, printing a clear message and returning None when the values are invalid."""
    from pydantic import ValidationError

    try:
        return settings_from(args, names)
    except ValidationError as exc:
        print(f"rollcast {command}: invalid settings:\n{exc}", file=sys.stderr)
        return None


def require_redis(command: str, settings: Any) -> bool:
    """API and worker processes meet in Redis: refuse to start without a Redis URL."""
    url = settings.redis_url
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        return True
    print(
        f"rollcast {command}: a Redis URL is required (--redis-url or ROLLCAST_REDIS_URL, e.g. "
        "redis://127.0.0.1:6379/0): the front end and the workers meet in Redis. "
        "For one process without Redis use 'rollcast serve'.",
        file=sys.stderr,
    )
    return False


def may_listen(command: str, settings: Any) -> bool:
    """Refuse to listen beyond loopback without API keys unless --allow-insecure says so."""
    from server.api.auth import insecure_listen_error

    problem = insecure_listen_error(settings)
    if problem:
        print(f"rollcast {command}: {problem}", file=sys.stderr)
    return problem is None


def run_command(
    command: str,
    args: argparse.Namespace,
    names: Sequence[str],
    main: Callable[[Any], Coroutine[Any, Any, int]],
    *,
    needs_redis: bool = False,
    listens: bool = False,
) -> int:
    """Settings from flags and environment, the refusals (exit 2), logging, then `main`."""
    from server.logs import setup_logging

    settings = load_settings(command, args, names)
    if settings is None:
        return 2
    if needs_redis and not require_redis(command, settings):
        return 2
    if listens and not may_listen(command, settings):
        return 2
    setup_logging(settings)
    try:
        return asyncio.run(main(settings))
    except KeyboardInterrupt:  # pragma: no cover - a forced exit
        return 130
