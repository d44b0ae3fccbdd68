"""The broker contract, per-session streams and workers: control messages, output chunks, init
segments, heartbeats, against the in-process and the Redis broker (the `env` fixture in
conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from broker_env import BrokerEnv, blocks_then_wakes, create_many

from server.broker import Broker, MemoryBroker, RedisBroker, SessionNotFound, WorkerInfo, make_broker

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
    got, eid = await blocks_then_wakes(
        lambda block_s: broker.read_output(sid, after_id="$", block_s=block_s),
        lambda: broker.publish_media(sid, b"chunk", {"chunk": 0}),
    )
    assert [g.id for g in got] == [eid]


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
