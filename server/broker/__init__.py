"""Session queue, job distribution and per-session streams between front ends and workers.

`make_broker(url)` picks the implementation: no URL or ``memory://`` gives the in-process
`MemoryBroker` (embedded ``rollcast serve``: API and worker in one process, no Redis);
``redis://``, ``rediss://`` or ``unix://`` gives `RedisBroker`.  Both implement `Broker`
(see base.py for the contract and keys.py for the Redis layout).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from server.broker.base import Broker, BrokerConfig
from server.broker.memory_broker import MemoryBroker
from server.broker.models import (
    LIVE_STATES,
    TERMINAL_STATES,
    BrokerError,
    ControlEntry,
    Job,
    OutputEntry,
    QuotaExceeded,
    SessionExists,
    SessionNotFound,
    SessionRecord,
    SessionState,
    WorkerInfo,
    new_session_id,
)
from server.broker.redis_broker import RedisBroker

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def make_broker(url: str | None, config: BrokerConfig | None = None, **overrides: Any) -> Broker:
    """Create the broker for ``url``; ``overrides`` replace fields of ``config``
    (e.g. ``make_broker(url, prefix="staging", session_ttl_s=600)``)."""
    cfg = replace(config or BrokerConfig(), **overrides)
    if url is None or url in ("", "memory://", "memory"):
        return MemoryBroker(cfg)
    if url.startswith(_REDIS_SCHEMES):
        return RedisBroker.from_url(url, cfg)
    raise ValueError(f"unsupported broker URL {url!r} (use memory:// or redis://...)")


__all__ = [
    "LIVE_STATES",
    "TERMINAL_STATES",
    "Broker",
    "BrokerConfig",
    "BrokerError",
    "ControlEntry",
    "Job",
    "MemoryBroker",
    "OutputEntry",
    "QuotaExceeded",
    "RedisBroker",
    "SessionExists",
    "SessionNotFound",
    "SessionRecord",
    "SessionState",
    "WorkerInfo",
    "make_broker",
    "new_session_id",
]
