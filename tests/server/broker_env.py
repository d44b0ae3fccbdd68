"""Shared fixtures for the broker tests: one environment per implementation.

`BrokerEnv.peer()` is "another process talking to the same broker": a second Redis client
with the same key prefix, or the very same in-process broker (which is, by design, only
shared inside one process).  Redis tests use db 15 and a unique prefix per test; every key
under it is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from server.broker import Broker, BrokerConfig, MemoryBroker, RedisBroker, SessionRecord, new_session_id

T = TypeVar("T")

REDIS_URL = os.environ.get("ROLLCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclass
class BrokerEnv:
    kind: str
    config: BrokerConfig
    broker: Broker
    _made: list[Broker] = field(default_factory=list)

    def peer(self) -> Broker:
        if self.kind == "memory":
            return self.broker
        b = RedisBroker.from_url(REDIS_URL, self.config)
        self._made.append(b)
        return b

    def fresh(self, **overrides: object) -> Broker:
        """A broker with a different config (its own state for memory, same prefix for Redis)."""
        cfg = replace(self.config, **overrides)  # type: ignore[arg-type]
        b: Broker = MemoryBroker(cfg) if self.kind == "memory" else RedisBroker.from_url(REDIS_URL, cfg)
        self._made.append(b)
        return b

    async def aclose(self) -> None:
        for b in self._made:
            await b.close()
        await self.broker.close()


async def delete_prefix(prefix: str) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


async def open_env(kind: str) -> AsyncIterator[BrokerEnv]:
    prefix = f"rollcast-test:{uuid.uuid4().hex[:12]}"
    cfg = BrokerConfig(prefix=prefix)
    broker: Broker = MemoryBroker(cfg) if kind == "memory" else RedisBroker.from_url(REDIS_URL, cfg)
    env = BrokerEnv(kind, cfg, broker)
    try:
        yield env
    finally:
        await env.aclose()
        if kind == "redis":
            await delete_prefix(prefix)


BROKER_KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


def record(sid: str, api_key_id: str | None = None, **kw: object) -> SessionRecord:
    params = {"fps": 16, "max_frames": None, "format": "fmp4", "preset": "tiny"}
    return SessionRecord(
        id=sid,
        prompt=f"prompt of {sid}",
        seed=7,
        params=params,
        api_key_id=api_key_id,
        created_at=time.time(),
        **kw,  # type: ignore[arg-type]
    )


async def create_many(b: Broker, n: int, tag: str = "s") -> list[str]:
    """`n` queued sessions, created in order (each at the queue position of its index)."""
    ids = [f"{tag}{i}_{new_session_id()}" for i in range(n)]
    for i, sid in enumerate(ids):
        assert await b.create_session(record(sid)) == i
    return ids


async def blocks_then_wakes(
    read: Callable[[float], Coroutine[Any, Any, list[T]]], arrive: Callable[[], Awaitable[str]]
) -> tuple[list[T], str]:
    """A blocking read (`read(block_s)`) returns empty after its 0.3 s block, and a waiting one
    returns within a second of `arrive()`: what it read, and what `arrive` returned."""
    t0 = time.monotonic()
    assert await read(0.3) == []
    assert 0.25 <= time.monotonic() - t0 < 2.0
    waiter = asyncio.create_task(read(5.0))
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    made = await arrive()
    got = await asyncio.wait_for(waiter, 5.0)
    assert time.monotonic() - t0 < 1.0
    return got, made
