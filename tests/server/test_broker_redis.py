"""Redis-only broker tests: the documented key layout, and nothing left behind after TTLs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from broker_env import REDIS_URL, BrokerEnv, open_env, record

from server.broker import RedisBroker, SessionNotFound, WorkerInfo, new_session_id
from server.broker.keys import HANDBACK_CONSUMER, KeySpace

pytestmark = pytest.mark.redis


@pytest.fixture
async def env() -> AsyncIterator[BrokerEnv]:
    async for e in open_env("redis"):
        yield e


@pytest.fixture
async def r() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


async def key_types(r: Any, prefix: str) -> dict[str, str]:
    keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
    return {k[len(prefix) + 1 :]: await r.type(k) for k in keys}


async def test_key_layout_is_as_documented(env: BrokerEnv, r: Any) -> None:
    b = env.broker
    p = env.config.prefix
    sid = new_session_id()
    await b.create_session(record(sid, api_key_id="key1"), quota=5)
    queued = new_session_id()
    await b.create_session(record(queued))
    await b.heartbeat(WorkerInfo(id="w1", capacity=2), ttl_s=30)
    (job,) = await b.claim_jobs("w1", 1)
    await b.send_control(sid, {"type": "pause"})
    await b.publish_event(sid, {"type": "started"})
    await b.publish_media(sid, b"frag", {"chunk": 0})
    await b.set_init_segment(sid, b"init")
    await b.save_snapshot(sid, b"snap")

    assert await key_types(r, p) == {
        "jobs": "stream",
        "queue": "zset",
        "queue:seq": "string",
        "sessions": "set",
        "key:key1:sessions": "set",
        f"session:{sid}": "hash",
        f"session:{sid}:control": "stream",
        f"session:{sid}:out": "stream",
        f"session:{sid}:init": "string",
        f"session:{sid}:snapshot": "string",
        f"session:{queued}": "hash",
        "worker:w1": "string",
        "workers": "zset",
    }
    ks = KeySpace(p)
    assert await r.zrange(ks.queue, 0, -1) == [queued]
    assert await r.smembers(ks.live) == {sid, queued}
    assert await r.smembers(ks.key_sessions("key1")) == {sid}
    # Hash values are JSON.
    h = await r.hgetall(ks.session(sid))
    assert json.loads(h["state"]) == "starting" and json.loads(h["worker_id"]) == "w1"
    assert json.loads(h["params"])["format"] == "fmp4" and json.loads(h["job_id"]) == job.entry_id
    # Jobs stream: one entry per live session, read by the documented group.
    groups = await r.xinfo_groups(ks.jobs)
    assert [g["name"] for g in groups] == [f"{p}:workers"]
    entries = await r.xrange(ks.jobs)
    assert sorted(f["session_id"] for _, f in entries) == sorted([sid, queued])
    pending = await r.xpending_range(ks.jobs, ks.group, "-", "+", 10)
    assert [(x["message_id"], x["consumer"]) for x in pending] == [(job.entry_id, "w1")]
    # Output / control entry shapes.
    raw: Any = aioredis.Redis.from_url(REDIS_URL)
    out = await raw.xrange(ks.output(sid))
    await raw.aclose()
    assert out[0][1] == {b"kind": b"event", b"data": b'{"type": "started"}'}
    assert out[1][1] == {b"kind": b"media", b"data": b"frag", b"meta": b'{"chunk": 0}'}
    ctl = await r.xrange(ks.control(sid))
    assert [json.loads(f["data"]) for _, f in ctl] == [{"type": "pause"}]
    assert 0 < await r.pttl(ks.worker("w1")) <= 30_000
    assert json.loads(await r.get(ks.worker("w1")))["capacity"] == 2
    # No per-session key has a TTL while the session lives.
    for key in ks.session_keys(sid):
        assert await r.ttl(key) == -1

    # Hand-back parks the job on the reserved consumer with a huge idle time.
    assert await b.hand_back(job)
    pending = await r.xpending_range(ks.jobs, ks.group, "-", "+", 10)
    assert pending[0]["consumer"] == HANDBACK_CONSUMER
    assert pending[0]["time_since_delivered"] > 10**10
    assert pending[0]["times_delivered"] == 1  # a hand-back is not a delivery


async def test_nothing_left_behind_after_ttl(env: BrokerEnv, r: Any) -> None:
    b = env.fresh(session_ttl_s=0.5)
    p = env.config.prefix
    ks = KeySpace(p)
    running, cancelled = new_session_id(), new_session_id()
    await b.create_session(record(running, api_key_id="k"), quota=2)
    await b.create_session(record(cancelled, api_key_id="k"), quota=2)
    await b.heartbeat(WorkerInfo(id="w1"), ttl_s=0.3)
    (job,) = await b.claim_jobs("w1", 1)
    for sid in (running, cancelled):
        await b.send_control(sid, {"type": "set_seed", "seed": 1})
        await b.publish_event(sid, {"type": "chunk"})
    await b.set_init_segment(running, b"init")
    await b.save_snapshot(running, b"snap")
    assert await r.xlen(ks.jobs) == 2  # queued + running, what an autoscaler watches

    assert await b.end_session(cancelled, reason="cancelled", expect=["queued"])
    assert await r.xlen(ks.jobs) == 1  # the cancelled job is gone before any worker saw it
    assert await b.end_session(running, reason="done")
    assert not await b.ack_job(job)  # already retired by end_session
    assert await r.xlen(ks.jobs) == 0
    for key in ks.session_keys(running):
        assert 0 < await r.pttl(key) <= 500, key
    # A write that races with the end (final event, last snapshot) inherits the TTL.
    await r.delete(ks.init_segment(cancelled))
    await b.set_init_segment(cancelled, b"late")
    assert 0 < await r.pttl(ks.init_segment(cancelled)) <= 500
    await b.publish_event(cancelled, {"type": "ended"})
    assert 0 < await r.pttl(ks.output(cancelled)) <= 500

    await asyncio.sleep(0.8)
    assert await b.list_workers() == []  # also prunes the worker index
    remaining = await key_types(r, p)
    # Only the (empty) jobs stream with its group and the enqueue counter survive.
    assert remaining == {"jobs": "stream", "queue:seq": "string"}
    assert await r.xlen(ks.jobs) == 0
    with pytest.raises(SessionNotFound):
        await b.publish_event(running, {"type": "late"})
    with pytest.raises(SessionNotFound):
        await b.send_control(running, {"type": "stop"})
    with pytest.raises(SessionNotFound):
        await b.save_snapshot(running, b"x")
    assert await key_types(r, p) == remaining  # refused writes created nothing


async def test_blocking_read_longer_than_socket_timeout(env: BrokerEnv) -> None:
    # Blocking reads are sliced under the socket timeout, so a long wait is not an error.
    b = RedisBroker.from_url(REDIS_URL, env.config, socket_timeout_s=0.4)
    try:
        sid = new_session_id()
        await b.create_session(record(sid))
        waiter = asyncio.create_task(b.read_output(sid, after_id="$", block_s=3.0))
        await asyncio.sleep(1.0)
        eid = await env.broker.publish_event(sid, {"type": "chunk"})
        got = await asyncio.wait_for(waiter, 3.0)
        assert [e.id for e in got] == [eid]
        assert await b.claim_jobs("w1", 1, block_s=1.0) != []
        assert await b.claim_jobs("w1", 1, block_s=1.0) == []
    finally:
        await b.close()


async def test_claims_recover_when_the_jobs_stream_was_deleted(env: BrokerEnv, r: Any) -> None:
    b = env.broker
    await b.create_session(record(new_session_id()))
    await b.claim_jobs("w1", 1)
    await r.delete(KeySpace(env.config.prefix).jobs)  # group gone with it (e.g. an operator's DEL)
    sid = new_session_id()
    await b.create_session(record(sid))  # XADD recreates the stream, without the group
    (job,) = await b.claim_jobs("w1", 1)
    assert job.session_id == sid
    assert await b.ack_job(job)
