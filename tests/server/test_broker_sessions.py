"""The broker contract, sessions and the queue: the same tests run against the in-process and the
Redis broker (the `env` fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from broker_env import BrokerEnv, create_many, record

from server.broker import Broker, QuotaExceeded, SessionExists, SessionNotFound, new_session_id

# ---------------------------------------------------------------------- sessions


async def test_session_create_get_update_end(broker: Broker) -> None:
    rec = record(new_session_id(), api_key_id="k1")
    assert await broker.create_session(rec) == 0
    got = await broker.get_session(rec.id)
    assert got is not None
    assert got.model_dump(exclude={"job_id"}) == rec.model_dump(exclude={"job_id"})
    assert got.job_id  # the jobs-stream entry is recorded

    await broker.update_session(
        rec.id, state="running", width=832, height=480, fps=16.0, codec="h264", started_at=12.5
    )
    await broker.update_session(rec.id, frames_generated=48, chunks_generated=4, worker_id="w9")
    got = await broker.get_session(rec.id)
    assert got is not None
    assert (got.state, got.width, got.height, got.fps, got.codec) == ("running", 832, 480, 16.0, "h264")
    assert (got.frames_generated, got.chunks_generated, got.started_at) == (48, 4, 12.5)
    assert got.params == rec.params and got.prompt == rec.prompt

    with pytest.raises(ValueError):
        await broker.update_session(rec.id, state="ended")  # only end_session ends
    with pytest.raises(ValueError):
        await broker.update_session(rec.id, no_such_field=1)
    with pytest.raises(ValueError):
        await broker.update_session(rec.id, api_key_id="other")
    with pytest.raises(SessionNotFound):
        await broker.update_session("s_missing", frames_generated=1)

    before = time.time()
    assert await broker.end_session(rec.id, "failed", reason="engine crashed", error_code="E_ENGINE")
    got = await broker.get_session(rec.id)
    assert got is not None and got.state == "failed"
    assert got.end_reason == "engine crashed" and got.error_code == "E_ENGINE"
    assert got.ended_at is not None and got.ended_at >= before - 1
    assert not await broker.end_session(rec.id)  # ends exactly once
    assert await broker.list_sessions() == []
    with pytest.raises(SessionNotFound):
        await broker.end_session("s_missing")
    with pytest.raises(ValueError):
        await broker.end_session(rec.id, "running")


async def test_create_rejects_duplicates_and_non_queued(broker: Broker) -> None:
    rec = record(new_session_id())
    await broker.create_session(rec)
    with pytest.raises(SessionExists):
        await broker.create_session(rec)
    with pytest.raises(ValueError):
        await broker.create_session(record(new_session_id(), state="running"))
    with pytest.raises(ValueError):
        await broker.create_session(record(new_session_id()), quota=3)  # quota needs a key
    assert await broker.count_queued() == 1


async def test_ended_session_expires_after_ttl(env: BrokerEnv) -> None:
    b = env.fresh(session_ttl_s=0.4)
    sid = new_session_id()
    await b.create_session(record(sid))
    await b.publish_event(sid, {"type": "started"})
    await b.set_init_segment(sid, b"init")
    await b.save_snapshot(sid, b"snap")
    await b.send_control(sid, {"type": "stop"})
    assert await b.end_session(sid)
    # Still readable during the TTL, and late writes (the final "ended" event) still work.
    await b.publish_event(sid, {"type": "ended"})
    assert (await b.get_session(sid)) is not None
    assert [e.event["type"] for e in await b.read_output(sid) if e.event] == ["started", "ended"]
    await asyncio.sleep(0.7)
    assert await b.get_session(sid) is None
    assert await b.get_init_segment(sid) is None
    assert await b.load_snapshot(sid) is None
    assert await b.read_output(sid) == []
    assert await b.read_control(sid) == []
    with pytest.raises(SessionNotFound):
        await b.publish_event(sid, {"type": "late"})


# ---------------------------------------------------------------------- queue


async def test_queue_positions_exact_through_claims_and_cancels(broker: Broker) -> None:
    ids = await create_many(broker, 6)
    assert [await broker.queue_position(s) for s in ids] == [0, 1, 2, 3, 4, 5]
    assert await broker.count_queued() == 6 and await broker.count_active() == 0

    assert await broker.end_session(ids[2], reason="cancelled", expect=["queued"])
    assert await broker.queue_position(ids[2]) is None
    assert [await broker.queue_position(s) for s in ids[3:]] == [2, 3, 4]

    jobs = await broker.claim_jobs("w1", max_n=2)
    assert [j.session_id for j in jobs] == ids[:2]  # FIFO
    for j in jobs:
        assert await broker.queue_position(j.session_id) is None
        rec = await broker.get_session(j.session_id)
        assert rec is not None and rec.state == "starting" and rec.worker_id == "w1"
    assert [await broker.queue_position(s) for s in ids[3:]] == [0, 1, 2]
    assert await broker.count_queued() == 3 and await broker.count_active() == 2

    late = new_session_id()
    assert await broker.create_session(record(late)) == 3
    assert await broker.end_session(ids[4], reason="cancelled")
    assert [await broker.queue_position(s) for s in (ids[3], ids[5], late)] == [0, 1, 2]
    # A cancelled session's job is never delivered.
    rest = await broker.claim_jobs("w2", max_n=10)
    assert [j.session_id for j in rest] == [ids[3], ids[5], late]
    assert await broker.count_queued() == 0 and await broker.count_active() == 5
    listed = [r.id for r in await broker.list_sessions()]
    assert sorted(listed) == sorted([*ids[:2], ids[3], ids[5], late])


async def test_end_session_compare_and_set(broker: Broker) -> None:
    (sid,) = await create_many(broker, 1)
    assert not await broker.end_session(sid, expect=["running", "paused"])
    assert await broker.queue_position(sid) == 0
    (job,) = await broker.claim_jobs("w1", 1)
    # The front end's cancel loses the race against the claim: it must ask the worker instead.
    assert not await broker.end_session(sid, reason="cancelled", expect=["queued"])
    rec = await broker.get_session(sid)
    assert rec is not None and rec.state == "starting"
    assert await broker.end_session(sid, reason="stopped", expect=["starting", "running"])
    # Ending retires the job: the worker's ack finds nothing, and nobody can reclaim it.
    assert not await broker.ack_job(job)
    assert await broker.reclaim_abandoned("w2", 0.0, 10) == []


async def test_quota_is_atomic_under_concurrent_creates(env: BrokerEnv) -> None:
    clients = [env.peer() for _ in range(4)]
    recs = [record(new_session_id(), api_key_id="key-a") for _ in range(20)]
    results = await asyncio.gather(
        *(clients[i % 4].create_session(r, quota=3) for i, r in enumerate(recs)),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(ok) == 3 and len(refused) == 17, results
    assert sorted(ok) == [0, 1, 2]
    assert refused[0].limit == 3 and refused[0].api_key_id == "key-a"
    b = env.broker
    live = await b.list_sessions("key-a")
    assert len(live) == 3
    assert await b.count_queued() == 3
    # Other keys have their own quota; ending a session frees a slot.
    await b.create_session(record(new_session_id(), api_key_id="key-b"), quota=3)
    with pytest.raises(QuotaExceeded):
        await b.create_session(record(new_session_id(), api_key_id="key-a"), quota=3)
    await b.end_session(live[0].id, reason="cancelled")
    await b.create_session(record(new_session_id(), api_key_id="key-a"), quota=3)
    assert len(await b.list_sessions("key-a")) == 3
