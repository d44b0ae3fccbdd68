"""The broker contract, jobs: claims, hand-backs and the reclaim of a crashed worker's jobs, against
the in-process and the Redis broker (the `env` fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import time

from broker_env import BrokerEnv, blocks_then_wakes, create_many, record

from server.broker import Broker, Job, WorkerInfo, new_session_id

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
    async def create() -> str:
        sid = new_session_id()
        await broker.create_session(record(sid))
        return sid

    jobs, sid = await blocks_then_wakes(lambda block_s: broker.claim_jobs("w1", 1, block_s=block_s), create)
    assert [j.session_id for j in jobs] == [sid]


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
