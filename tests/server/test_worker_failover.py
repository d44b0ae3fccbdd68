"""Worker drain and crash recovery: hand-back + resume from snapshot, reclaim after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from fractions import Fraction

import pytest
from broker_env import BROKER_KINDS, BrokerEnv
from worker_env import (
    FPS,
    Output,
    create,
    decode_session,
    make_generator,
    open_worker_env,
    running_worker,
    wait_for,
    worker_settings,
)

from server.broker import Broker
from server.settings import Settings
from server.worker import Worker

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=BROKER_KINDS)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[BrokerEnv]:
    async for e in open_worker_env(request.param):
        yield e


async def start_worker(
    broker: Broker, settings: Settings, worker_id: str
) -> tuple[Worker, asyncio.Task[None]]:
    w = Worker(settings, broker, generator=make_generator(), worker_id=worker_id)
    task = asyncio.create_task(w.run())
    await wait_for(lambda: w.ready, 30, "worker ready")
    return w, task


def chunk_layout_ok(chunks: list[dict]) -> None:
    """Chunk indices strictly increase and each chunk starts where the model puts it."""
    indices = [c["index"] for c in chunks]
    assert indices == sorted(set(indices)), indices
    for c in chunks:
        assert c["first_frame"] == (0 if c["index"] == 0 else 9 + 12 * (c["index"] - 1))


async def test_drain_finishes_a_bounded_session(env: BrokerEnv) -> None:
    b = env.broker
    w, task = await start_worker(b, worker_settings(drain_timeout_s=30.0), "w-drain-finish")
    sid = await create(b, max_frames=57)  # 9 + 4 x 12
    out = Output(b, sid)
    await out.until_event("chunk")
    w.request_drain()
    assert not w.ready
    await asyncio.wait_for(task, 60)
    await out.poll()
    assert out.events("ended") == [{"type": "ended", "reason": "completed", "frames": 57}]
    assert [wi.id for wi in await b.list_workers()] == []


async def test_drain_hands_back_and_another_worker_resumes_from_the_snapshot(env: BrokerEnv) -> None:
    b = env.broker
    settings = worker_settings(snapshot_every_chunks=2, drain_timeout_s=5.0)
    w1, t1 = await start_worker(b, settings, "w-first")
    sid = await create(b, "a red circle moving left", seed=21)  # unbounded: cannot finish in a drain
    out = Output(b, sid)
    await out.until(lambda o: len(o.events("chunk")) >= 3, what="3 chunks")
    w1.request_drain()
    await asyncio.wait_for(t1, 30)
    await out.poll()
    handed = len(out.events("chunk"))
    rec = await b.get_session(sid)
    assert rec is not None and rec.state == "running"  # not ended: viewers keep waiting
    assert rec.chunks_generated == handed
    assert "ended" not in out.types() and out.events("error") == []
    assert [wi.id for wi in await b.list_workers()] == []
    assert await b.load_snapshot(sid) is not None

    async with running_worker(env.peer(), settings, worker_id="w-second") as (_w2, _):
        await out.until(lambda o: len(o.events("chunk")) >= handed + 3, what="chunks from the second worker")
        rec = await b.get_session(sid)
        assert rec is not None and rec.worker_id == "w-second"
        await b.send_control(sid, {"type": "stop"})
        await out.until_event("ended")

    chunks = out.events("chunk")
    assert [c["index"] for c in chunks] == list(range(len(chunks)))  # continues: no gap, no repeat
    chunk_layout_ok(chunks)
    assert len(out.events("started")) == 1 and out.events("error") == []
    init = await b.get_init_segment(sid)
    assert init is not None
    frames = decode_session(init, out)  # one init, fragments from both workers: one valid stream
    total = chunks[-1]["first_frame"] + chunks[-1]["frames"]
    assert [f.time for f in frames] == [Fraction(i, FPS) for i in range(total)]
    assert out.events("ended")[-1] == {"type": "ended", "reason": "stopped", "frames": total}


async def test_paused_session_is_handed_back_paused(env: BrokerEnv) -> None:
    b = env.broker
    settings = worker_settings(snapshot_every_chunks=0)
    w1, t1 = await start_worker(b, settings, "w-paused-1")
    sid = await create(b)
    out = Output(b, sid)
    await out.until_event("chunk")
    await b.send_control(sid, {"type": "pause"})
    paused = await out.until_event("paused")
    w1.request_drain()
    await asyncio.wait_for(t1, 30)
    async with running_worker(env.peer(), settings, worker_id="w-paused-2") as (w2, _):
        await wait_for(lambda: sid in w2.streams, 20, "second worker took the session")
        n = len(out.events("chunk"))
        await asyncio.sleep(0.5)
        await out.poll()
        assert len(out.events("chunk")) == n  # still paused
        rec = await b.get_session(sid)
        assert rec is not None and rec.state == "paused"
        await b.send_control(sid, {"type": "resume"})
        resumed = await out.until_event("resumed")
        await out.until(lambda o: len(o.events("chunk")) > n, what="chunk after resume")
        await b.send_control(sid, {"type": "stop"})
        await out.until_event("ended")
    assert resumed["frame"] == paused["frame"] == out.events("chunk")[n]["first_frame"]
    chunk_layout_ok(out.events("chunk"))
    assert len(out.events("paused")) == 1


async def test_crashed_worker_is_reclaimed_and_the_stream_continues(env: BrokerEnv) -> None:
    b = env.broker
    settings = worker_settings(snapshot_every_chunks=2, heartbeat_ttl_s=1.0, heartbeat_interval_s=0.2)
    _w1, t1 = await start_worker(b, settings, "w-crash")
    sid = await create(b, seed=4)
    out = Output(b, sid)
    await out.until(lambda o: len(o.events("chunk")) >= 5, what="5 chunks")
    t1.cancel()  # a crash: no hand-back, no heartbeat removal
    await asyncio.gather(t1, return_exceptions=True)
    assert "w-crash" in [wi.id for wi in await b.list_workers()]  # until its heartbeat expires
    await out.poll()
    before = len(out.events("chunk"))

    async with running_worker(env.peer(), settings, worker_id="w-rescue") as (_w2, _):
        await out.until(lambda o: len(o.events("chunk")) >= before + 3, timeout=30, what="resumed chunks")
        rec = await b.get_session(sid)
        assert rec is not None and rec.worker_id == "w-rescue"
        assert "w-crash" not in [wi.id for wi in await b.list_workers()]
        await b.send_control(sid, {"type": "stop"})
        await out.until_event("ended")

    chunks = out.events("chunk")
    chunk_layout_ok(chunks)  # continued from the snapshot, chunks already published not repeated
    assert chunks[before]["index"] >= before  # a gap only if the crash hit mid-publish
    assert len(out.events("started")) == 1 and out.events("error") == []
    assert out.events("ended")[-1]["reason"] == "stopped"


async def test_crash_without_snapshot_restarts_from_frame_zero(env: BrokerEnv) -> None:
    b = env.broker
    settings = worker_settings(snapshot_every_chunks=0, heartbeat_ttl_s=1.0, heartbeat_interval_s=0.2)
    _w1, t1 = await start_worker(b, settings, "w-crash-nosnap")
    sid = await create(b, seed=4)
    out = Output(b, sid)
    await out.until(lambda o: len(o.events("chunk")) >= 2, what="2 chunks")
    t1.cancel()
    await asyncio.gather(t1, return_exceptions=True)
    await out.poll()
    before = len(out.events("chunk"))
    async with running_worker(env.peer(), settings, worker_id="w-rescue-nosnap") as _:
        await out.until_event("started", n=2, timeout=30)
        await out.until(lambda o: len(o.events("chunk")) >= before + 2, what="restarted chunks")
        await b.send_control(sid, {"type": "stop"})
        await out.until_event("ended")
    note = out.events("error")
    assert len(note) == 1 and note[0]["code"] == "session_restarted" and note[0]["retryable"] is True
    types = out.types()
    assert types.index("error") < len(types) - 1 - types[::-1].index("started")  # note, then started
    assert out.events("chunk")[before]["index"] == 0  # restarted from frame 0


async def test_a_session_that_keeps_losing_its_workers_fails_as_worker_lost(env: BrokerEnv) -> None:
    b = env.broker
    sid = await create(b)
    for _ in range(2):  # two deliveries to workers that gave it back
        (job,) = await b.claim_jobs("w-flaky", 1)
        assert job.session_id == sid and await b.hand_back(job)
    async with running_worker(b, worker_settings(max_job_deliveries=2)) as _:
        out = Output(b, sid)
        ended = await out.until_event("ended")
    assert ended == {"type": "ended", "reason": "worker_lost", "frames": 0}
    (err,) = out.events("error")
    assert err["code"] == "worker_lost" and err["retryable"] is False
    assert out.events("chunk") == []
    rec = await b.get_session(sid)
    assert rec is not None and rec.state == "failed" and rec.end_reason == "worker_lost"
