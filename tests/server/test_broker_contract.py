"""The broker contract: the same tests run against the in-process and the Redis broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from broker_env import BROKER_KINDS, BrokerEnv, open_env, record

from server.broker import (
    Broker,
    Job,
    MemoryBroker,
    QuotaExceeded,
    RedisBroker,
    SessionExists,
    SessionNotFound,
    WorkerInfo,
    make_broker,
    new_session_id,
)


@pytest.fixture(params=BROKER_KINDS)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[BrokerEnv]:
    async for e in open_env(request.param):
        yield e


@pytest.fixture
def broker(env: BrokerEnv) -> Broker:
    return env.broker


async def create_many(b: Broker, n: int, tag: str = "s") -> list[str]:
    ids = [f"{tag}{i}_{new_session_id()}" for i in range(n)]
    for i, sid in enumerate(ids):
        assert await b.create_session(record(sid)) == i
    return ids


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


# ---------------------------------------------------------------------- jobs


async def test_terminal_state_is_final(broker: Broker) -> None:
    """A worker's late state write (pause racing a DELETE) cannot revive an ended session."""
    (sid,) = await create_many(broker, 1)
    await broker.claim_jobs("w1", 1)
    await broker.update_session(sid, state="running")
    assert await broker.end_session(sid, reason="deleted")
    await broker.update_session(sid, state="paused", frames_generated=42)
    rec = await broker.get_session(sid)
    assert rec is not None and rec.state == "ended" and rec.end_reason == "deleted"
    assert rec.frames_generated == 42  # other fields still land


async def test_claim_up_to_max_n_and_ack(broker: Broker) -> None:
    ids = await create_many(broker, 5)
    assert await broker.claim_jobs("w1", 0) == []
    first = await broker.claim_jobs("w1", 2)
    assert [j.session_id for j in first] == ids[:2]
    assert all(j.worker_id == "w1" and j.deliveries == 1 for j in first)
    second = await broker.claim_jobs("w2", 10)
    assert [j.session_id for j in second] == ids[2:]
    assert await broker.claim_jobs("w3", 10) == []

    stranger = Job(first[0].session_id, first[0].entry_id, "w2", 1)
    assert not await broker.ack_job(stranger)  # only the owner acks
    assert await broker.ack_job(first[0])
    assert not await broker.ack_job(first[0])
    # An acked job is gone for good: a later reclaim does not resurrect it.
    await asyncio.sleep(0.05)
    got = await broker.reclaim_abandoned("w3", 0.0, 10)
    assert first[0].session_id not in {j.session_id for j in got}


async def test_blocking_claim_wakes_on_new_job_and_times_out(broker: Broker) -> None:
    t0 = time.monotonic()
    assert await broker.claim_jobs("w1", 1, block_s=0.3) == []
    assert 0.25 <= time.monotonic() - t0 < 2.0

    waiter = asyncio.create_task(broker.claim_jobs("w1", 1, block_s=5.0))
    await asyncio.sleep(0.1)
    sid = new_session_id()
    t0 = time.monotonic()
    await broker.create_session(record(sid))
    jobs = await asyncio.wait_for(waiter, 5.0)
    assert [j.session_id for j in jobs] == [sid]
    assert time.monotonic() - t0 < 1.0


async def test_hand_back_goes_to_the_next_claimer_first(env: BrokerEnv) -> None:
    b, other = env.broker, env.peer()
    ids = await create_many(b, 1)
    (job,) = await b.claim_jobs("w1", 1)
    await b.update_session(job.session_id, state="running", started_at=time.time())
    newer = new_session_id()
    await b.create_session(record(newer))

    assert await b.hand_back(job)
    assert not await b.hand_back(job)  # no longer w1's
    (again,) = await other.claim_jobs("w2", 1)
    assert again.session_id == ids[0] and again.worker_id == "w2"
    assert again.deliveries == 2
    rec = await b.get_session(ids[0])
    assert rec is not None and rec.state == "running" and rec.worker_id == "w2"
    assert not await b.ack_job(job)  # the old owner cannot retire it any more
    assert await b.keepalive("w1", [job]) == [job]
    assert await b.keepalive("w2", [again]) == []
    (nxt,) = await other.claim_jobs("w2", 1)
    assert nxt.session_id == newer


async def test_hand_back_wakes_a_waiting_worker(env: BrokerEnv) -> None:
    b, other = env.broker, env.peer()
    await create_many(b, 1)
    (job,) = await b.claim_jobs("w1", 1)
    waiter = asyncio.create_task(other.claim_jobs("w2", 1, block_s=5.0))
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    assert await b.hand_back(job)
    (got,) = await asyncio.wait_for(waiter, 5.0)
    assert got.session_id == job.session_id
    assert time.monotonic() - t0 < 1.5


async def test_crashed_workers_job_is_reclaimed(env: BrokerEnv) -> None:
    b, other = env.broker, env.peer()
    await b.heartbeat(WorkerInfo(id="w1", capacity=2), ttl_s=0.5)
    await other.heartbeat(WorkerInfo(id="w2", capacity=2), ttl_s=10)
    ids = await create_many(b, 2)
    jobs = await b.claim_jobs("w1", 2)
    await b.update_session(ids[0], state="running")
    # Owner alive and job fresh: nothing to reclaim.
    assert await other.reclaim_abandoned("w2", 0.3, 10) == []
    await asyncio.sleep(0.8)  # w1 "crashes": no heartbeat, no keepalive
    got = await other.reclaim_abandoned("w2", 0.3, 1)
    assert len(got) == 1 and got[0].session_id == ids[0]  # max_n respected, oldest first
    got += await other.reclaim_abandoned("w2", 0.3, 10)
    assert [j.session_id for j in got] == ids
    assert all(j.worker_id == "w2" and j.deliveries == 2 for j in got)
    rec = await b.get_session(ids[0])
    assert rec is not None and rec.worker_id == "w2" and rec.state == "running"
    # The presumed-dead worker learns it lost them and cannot ack them.
    assert await b.keepalive("w1", jobs) == jobs
    assert not await b.ack_job(jobs[0])
    assert await other.ack_job(got[0])


async def test_live_workers_long_job_is_not_reclaimed(env: BrokerEnv) -> None:
    b, other = env.broker, env.peer()
    await other.heartbeat(WorkerInfo(id="w2"), ttl_s=10)
    await create_many(b, 1)
    jobs = await b.claim_jobs("w1", 1)
    # Heartbeat + keepalive well inside min_idle: never reclaimed.
    for _ in range(6):
        await b.heartbeat(WorkerInfo(id="w1"), ttl_s=1.0)
        assert await b.keepalive("w1", jobs) == []
        assert await other.reclaim_abandoned("w2", 0.5, 10) == []
        await asyncio.sleep(0.1)
    # Keepalives late but heartbeat alive: still not reclaimed (owner liveness guard).
    await b.heartbeat(WorkerInfo(id="w1"), ttl_s=5)
    await asyncio.sleep(0.6)
    assert await other.reclaim_abandoned("w2", 0.5, 10) == []
    # Heartbeat gone but keepalive fresh (idle guard): not reclaimed either.
    await b.remove_worker("w1")
    assert await b.keepalive("w1", jobs) == []
    assert await other.reclaim_abandoned("w2", 0.5, 10) == []
    await asyncio.sleep(0.6)
    (got,) = await other.reclaim_abandoned("w2", 0.5, 10)
    assert got.session_id == jobs[0].session_id


async def test_concurrent_reclaimers_split_the_jobs(env: BrokerEnv) -> None:
    b = env.broker
    await create_many(b, 6)
    await b.claim_jobs("dead", 6)
    await asyncio.sleep(0.15)
    peers = [env.peer() for _ in range(3)]
    results = await asyncio.gather(*(p.reclaim_abandoned(f"w{i}", 0.1, 10) for i, p in enumerate(peers)))
    claimed = [j.session_id for r in results for j in r]
    assert len(claimed) == 6 and len(set(claimed)) == 6


# ---------------------------------------------------------------------- control


async def test_control_round_trip_in_order(broker: Broker) -> None:
    sid, other = await create_many(broker, 2)
    msgs: list[dict[str, Any]] = [
        {"type": "set_prompt", "prompt": "a red fox", "transition": "blend", "over_chunks": 3},
        {"type": "set_seed", "seed": 5},
        {"type": "pause"},
        {"type": "resume"},
        {"type": "stop"},
    ]
    ids = [await broker.send_control(sid, m) for m in msgs]
    got = await broker.read_control(sid)
    assert [c.message for c in got] == msgs and [c.id for c in got] == ids
    assert [c.message for c in await broker.read_control(sid, after_id=ids[1])] == msgs[2:]
    assert await broker.read_control(sid, after_id=ids[-1]) == []
    assert await broker.read_control(other) == []
    assert [c.message for c in await broker.read_control(sid, count=2)] == msgs[:2]
    with pytest.raises(ValueError):
        await broker.send_control(sid, {"prompt": "no type"})
    with pytest.raises(SessionNotFound):
        await broker.send_control("s_missing", {"type": "stop"})

    waiter = asyncio.create_task(broker.read_control(sid, after_id=ids[-1], block_s=5.0))
    await asyncio.sleep(0.1)
    await broker.send_control(sid, {"type": "pause"})
    got = await asyncio.wait_for(waiter, 2.0)
    assert [c.message for c in got] == [{"type": "pause"}]


# ---------------------------------------------------------------------- output


async def test_output_publish_and_read_with_cursors(broker: Broker) -> None:
    sid, other = await create_many(broker, 2)
    assert await broker.latest_output_id(sid) == "0-0"
    assert await broker.read_output(sid) == []
    e1 = await broker.publish_event(sid, {"type": "started", "width": 832, "height": 480})
    m1 = await broker.publish_media(sid, b"\x00\x01fragment-0\xff", {"chunk": 0, "frames": 12})
    m2 = await broker.publish_media(sid, b"fragment-1")
    e2 = await broker.publish_event(sid, {"type": "prompt_applied", "chunk": 1})
    await broker.publish_event(other, {"type": "started"})

    got = await broker.read_output(sid)
    assert [g.id for g in got] == [e1, m1, m2, e2]
    assert [g.kind for g in got] == ["event", "media", "media", "event"]
    assert got[0].event == {"type": "started", "width": 832, "height": 480} and got[0].data == b""
    assert got[1].data == b"\x00\x01fragment-0\xff" and got[1].meta == {"chunk": 0, "frames": 12}
    assert got[1].event is None and got[2].meta == {}
    assert [g.id for g in await broker.read_output(sid, after_id=m1)] == [m2, e2]
    assert [g.id for g in await broker.read_output(sid, count=2)] == [e1, m1]
    assert await broker.latest_output_id(sid) == e2
    assert await broker.read_output(sid, after_id="$") == []
    with pytest.raises(ValueError):
        await broker.publish_event(sid, {"no": "type"})
    with pytest.raises(SessionNotFound):
        await broker.publish_media("s_missing", b"x")
    # Two sessions' outputs never mix.
    assert [g.event for g in await broker.read_output(other)] == [{"type": "started"}]


async def test_blocking_output_read_wakes_and_times_out(broker: Broker) -> None:
    (sid,) = await create_many(broker, 1)
    t0 = time.monotonic()
    assert await broker.read_output(sid, after_id="$", block_s=0.3) == []
    assert 0.25 <= time.monotonic() - t0 < 2.0

    waiter = asyncio.create_task(broker.read_output(sid, after_id="$", block_s=5.0))
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    eid = await broker.publish_media(sid, b"chunk", {"chunk": 0})
    got = await asyncio.wait_for(waiter, 5.0)
    assert [g.id for g in got] == [eid]
    assert time.monotonic() - t0 < 1.0


async def test_read_outputs_of_many_sessions_in_one_call(env: BrokerEnv) -> None:
    b, worker = env.broker, env.peer()
    ids = await create_many(b, 3)
    cursors = {sid: await b.latest_output_id(sid) for sid in ids}
    assert await b.read_outputs(cursors) == {}
    waiter = asyncio.create_task(b.read_outputs(cursors, block_s=5.0))
    await asyncio.sleep(0.1)
    eid = await worker.publish_event(ids[1], {"type": "chunk", "index": 0})
    got = await asyncio.wait_for(waiter, 2.0)
    assert list(got) == [ids[1]] and [e.id for e in got[ids[1]]] == [eid]
    await worker.publish_media(ids[0], b"a")
    await worker.publish_media(ids[2], b"c")
    got = await b.read_outputs(cursors)
    assert {sid: [e.data for e in es if e.kind == "media"] for sid, es in got.items()} == {
        ids[0]: [b"a"],
        ids[2]: [b"c"],
        ids[1]: [],
    }


async def test_output_stream_is_capped(broker: Broker) -> None:
    (sid,) = await create_many(broker, 1)
    cap = broker.config.output_maxlen
    first = await broker.publish_media(sid, b"x" * 64, {"chunk": 0})
    last = first
    for i in range(1, 10_000):
        last = await broker.publish_media(sid, b"x" * 64, {"chunk": i})
    kept = await broker.read_output(sid, count=100_000)
    # Redis trims approximately (whole stream nodes of 100 entries); never below the cap.
    assert cap <= len(kept) <= cap + 200
    assert kept[-1].id == last and kept[0].id != first
    assert kept[-1].meta == {"chunk": 9_999}
    chunks = [e.meta["chunk"] for e in kept]
    assert chunks == list(range(10_000 - len(kept), 10_000))  # newest kept, contiguous


async def test_init_segment_and_snapshot_round_trip(broker: Broker) -> None:
    sid, other = await create_many(broker, 2)
    assert await broker.get_init_segment(sid) is None
    assert await broker.load_snapshot(sid) is None
    blob = bytes(range(256)) * 1000
    await broker.set_init_segment(sid, b"ftyp....moov")
    await broker.save_snapshot(sid, blob)
    assert await broker.get_init_segment(sid) == b"ftyp....moov"
    assert await broker.load_snapshot(sid) == blob
    await broker.set_init_segment(sid, b"ftyp2")
    await broker.save_snapshot(sid, b"snap2")
    assert (await broker.get_init_segment(sid), await broker.load_snapshot(sid)) == (b"ftyp2", b"snap2")
    assert await broker.get_init_segment(other) is None and await broker.load_snapshot(other) is None
    with pytest.raises(SessionNotFound):
        await broker.save_snapshot("s_missing", b"x")
    with pytest.raises(SessionNotFound):
        await broker.set_init_segment("s_missing", b"x")


# ---------------------------------------------------------------------- workers


async def test_heartbeats_expire(broker: Broker) -> None:
    assert await broker.list_workers() == [] and await broker.ready_workers() == 0
    info = WorkerInfo(id="w-a", capacity=4, active_sessions=["s_1"], preset="tiny", device="cpu", host="h1")
    await broker.heartbeat(info, ttl_s=0.3)
    await broker.heartbeat(WorkerInfo(id="w-b", draining=True), ttl_s=10)
    await broker.heartbeat(WorkerInfo(id="w-c"), ttl_s=10)
    workers = await broker.list_workers()
    assert [w.id for w in workers] == ["w-a", "w-b", "w-c"]
    a = workers[0]
    assert (a.capacity, a.active_sessions, a.preset, a.device, a.host) == (4, ["s_1"], "tiny", "cpu", "h1")
    assert a.free_slots == 3 and workers[1].free_slots == 0
    assert await broker.ready_workers() == 2
    await asyncio.sleep(0.5)
    assert [w.id for w in await broker.list_workers()] == ["w-b", "w-c"]
    assert await broker.ready_workers() == 1
    await broker.remove_worker("w-c")
    assert [w.id for w in await broker.list_workers()] == ["w-b"]
    assert await broker.ready_workers() == 0


async def test_ping(broker: Broker) -> None:
    assert await broker.ping()


async def test_make_broker_picks_the_implementation() -> None:
    mem = make_broker(None)
    assert isinstance(mem, MemoryBroker) and mem.config.prefix == "rollcast"
    assert isinstance(make_broker("memory://", output_maxlen=7), MemoryBroker)
    assert make_broker("memory://", output_maxlen=7).config.output_maxlen == 7
    red = make_broker("redis://127.0.0.1:6379/15", prefix="x")
    assert isinstance(red, RedisBroker) and red.keys.jobs == "x:jobs"
    await red.close()
    with pytest.raises(ValueError):
        make_broker("http://example")
