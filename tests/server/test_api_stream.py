"""The WebSocket relay against a real uvicorn server and a real broker.  The worker's output
is simulated by publishing events and framed media into the broker directly (that is all
the relay sees of a worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_env import (
    CODEC,
    INIT_PAYLOAD,
    KEY_A,
    KEY_B,
    Live,
    create,
    fragment_ok,
    keyed_settings,
    live_server,
    make_settings,
    new_app,
    open_broker,
    publish_chunk,
    publish_jpeg_chunk,
    start_session,
    viewer,
)
from broker_env import BROKER_KINDS
from websockets.exceptions import ConnectionClosed

from server.broker import Broker
from server.media.framing import MediaKind, MediaMessage


@pytest.fixture(params=BROKER_KINDS)
async def live(request: pytest.FixtureRequest) -> AsyncIterator[Live]:
    async with open_broker(request.param) as broker, live_server(new_app(make_settings(), broker)) as srv:
        yield srv


@pytest.fixture
async def live_mem() -> AsyncIterator[Live]:
    async with open_broker("memory") as broker, live_server(new_app(make_settings(), broker)) as srv:
        yield srv


def broker_of(live: Live) -> Broker:
    return live.app.state.broker  # type: ignore[no-any-return]


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_viewer_from_the_start_gets_every_message_in_order(live: Live) -> None:
    broker = broker_of(live)
    async with live.client() as c:
        sid = (await create(c))["id"]
    async with viewer(live, sid) as v:
        hello = await v.next_event()
        assert hello == {"type": "session", "protocol": 1, "id": sid, "state": "queued", "format": "fmp4"}
        assert await v.next_event() == {"type": "queued", "position": 0}
        await start_session(broker, sid)
        for i in range(3):
            await publish_chunk(broker, sid, i)
        await broker.publish_event(sid, {"type": "ended", "reason": "completed", "frames": 12})
        assert await v.until_closed() == 1000
    assert v.order == [
        "event:session",
        "event:queued",
        "event:started",
        "media:1:0",
        "event:chunk",
        "media:2:0",
        "event:chunk",
        "media:2:1",
        "event:chunk",
        "media:2:2",
        "event:ended",
    ]
    started = v.events[2]
    assert started["codec"] == CODEC and started["mime"] == f'video/mp4; codecs="{CODEC}"'
    assert v.media[0].kind == MediaKind.INIT and v.media[0].payload == INIT_PAYLOAD
    assert all(fragment_ok(m, 64) for m in v.media[1:])
    assert [e["index"] for e in v.events if e["type"] == "chunk"] == [0, 1, 2]
    await wait_for(lambda: not live.app.state.relay.sessions)  # the reader stopped


async def test_late_joiner_gets_started_init_then_the_newest_chunk(live: Live) -> None:
    broker = broker_of(live)
    async with live.client() as c:
        sid = (await create(c))["id"]
    await start_session(broker, sid)
    for i in range(6):
        await publish_chunk(broker, sid, i)
    async with viewer(live, sid) as late:
        assert (await late.next_event())["state"] == "running"
        started = await late.next_event()
        assert started["type"] == "started" and started["width"] == 48 and started["codec"] == CODEC
        init = await late.next_media()
        assert init.kind == MediaKind.INIT and init.payload == INIT_PAYLOAD
        chunk = await late.next_event()
        assert chunk["type"] == "chunk" and chunk["index"] == 5
        frag = await late.next_media()
        assert frag.kind == MediaKind.FRAGMENT and frag.chunk_index == 5 and fragment_ok(frag, 64)
        # A second late joiner is seeded by the running reader the same way.
        await publish_chunk(broker, sid, 6)
        assert (await late.next_event())["index"] == 6
        assert (await late.next_media()).chunk_index == 6
        async with viewer(live, sid) as later:
            got = [await later.next() for _ in range(5)]
            assert [type(g).__name__ for g in got] == ["dict", "dict", "MediaMessage", "dict", "MediaMessage"]
            assert got[1]["type"] == "started" and got[2].kind == MediaKind.INIT  # type: ignore[union-attr,index]
            assert got[3]["index"] == 6 and got[4].chunk_index == 6  # type: ignore[union-attr,index]
            await publish_chunk(broker, sid, 7)
            for v in (late, later):
                assert (await v.next_event())["index"] == 7
                assert (await v.next_media()).chunk_index == 7
        assert len(live.app.state.relay.sessions) == 1  # one reader per session and process


async def test_joining_while_a_chunk_is_partly_published(live_mem: Live) -> None:
    """JPEG chunk 1 half published: the late joiner gets chunk 0 whole, then chunk 1 whole."""
    broker = broker_of(live_mem)
    async with live_mem.client() as c:
        sid = (await create(c, format="jpeg"))["id"]
    await start_session(broker, sid, fmt="jpeg")
    await publish_jpeg_chunk(broker, sid, 0, frames=3)
    await broker.publish_event(sid, {"type": "chunk", "index": 1, "first_frame": 3, "frames": 3})
    from server.media.framing import pack_media

    await broker.publish_media(sid, pack_media(MediaKind.JPEG, 1, 3, 1, b"jpeg"))
    async with viewer(live_mem, sid) as v:
        assert (await v.next_event())["format"] == "jpeg"
        started = await v.next_event()
        assert started["type"] == "started" and "codec" not in started
        for _ in range(2 + 3 + 1):
            await v.next()
        for frame in (4, 5):
            await broker.publish_media(sid, pack_media(MediaKind.JPEG, 1, frame, 1, b"jpeg"))
        await v.next()
        await v.next()
    frames = [(m.chunk_index, m.first_frame) for m in v.media]
    assert frames == [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5)]
    assert all(m.kind == MediaKind.JPEG for m in v.media)


async def test_queued_position_updates(live_mem: Live) -> None:
    broker = broker_of(live_mem)
    async with live_mem.client() as c:
        first = (await create(c))["id"]
        second = (await create(c))["id"]
        async with viewer(live_mem, second) as v:
            await v.next_event()
            assert await v.next_event() == {"type": "queued", "position": 1}
            await c.delete(f"/v1/sessions/{first}")
            assert await v.next_event(timeout=3) == {"type": "queued", "position": 0}
            await start_session(broker, second)
            assert (await v.next_event())["type"] == "started"
            assert (await v.next_media()).kind == MediaKind.INIT


async def test_control_is_forwarded_and_bad_messages_get_errors(live: Live) -> None:
    broker = broker_of(live)
    async with live.client() as c:
        sid = (await create(c))["id"]
    async with viewer(live, sid) as v:
        await v.next_event()
        await v.next_event()  # queued
        await v.send({"type": "set_prompt", "prompt": "a yellow duck", "transition": "recache"})
        bad: list[Any] = [
            "not json at all",
            {"type": "set_prompt"},
            {"type": "set_prompt", "prompt": ""},
            {"type": "set_prompt", "prompt": "x" * 2001},
            {"type": "set_seed", "seed": -4},
            {"type": "dance"},
            {"no": "type"},
            {"type": "pause", "extra": 1},
            b"\x00\x01binary",
        ]
        for message in bad:
            await v.send(message)
            err = await v.next_event()
            assert err["type"] == "error" and err["code"] == "invalid_message", (message, err)
            assert err["retryable"] is False and err["message"]
        await v.send({"type": "set_seed", "seed": 77})
        await v.send({"type": "pause"})
        await v.send({"type": "resume"})

        async def controls() -> list[dict[str, Any]]:
            return [e.message for e in await broker.read_control(sid)]

        for _ in range(100):
            if len(await controls()) == 4:
                break
            await asyncio.sleep(0.02)
        assert await controls() == [
            {"type": "set_prompt", "prompt": "a yellow duck", "transition": "recache"},
            {"type": "set_seed", "seed": 77},
            {"type": "pause"},
            {"type": "resume"},
        ]


async def test_stop_of_a_running_session_goes_to_the_worker_and_of_a_queued_one_ends_it(
    live_mem: Live,
) -> None:
    broker = broker_of(live_mem)
    async with live_mem.client() as c:
        running = (await create(c))["id"]
        await start_session(broker, running)
    async with viewer(live_mem, running) as v:
        await v.send({"type": "stop"})
        await wait_for_control(broker, running, [{"type": "stop"}])
    async with live_mem.client() as c:
        sid = (await create(c))["id"]
    async with viewer(live_mem, sid) as v:
        await v.next_event()
        await v.next_event()
        await v.send({"type": "stop"})
        ended = await v.next_event()
        assert ended == {"type": "ended", "reason": "stopped", "frames": 0}
        assert await v.until_closed() == 1000
    record = await broker.get_session(sid)
    assert record is not None and record.state == "ended" and record.end_reason == "stopped"
    running_record = await broker.get_session(running)
    assert running_record is not None and running_record.state == "running"  # the worker decides


async def wait_for_control(broker: Broker, sid: str, expected: list[dict[str, Any]]) -> None:
    for _ in range(200):
        if [e.message for e in await broker.read_control(sid)] == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"control stream never became {expected}")


async def test_delete_sends_ended_and_closes_every_viewer(live: Live) -> None:
    broker = broker_of(live)
    async with live.client() as c:
        sid = (await create(c))["id"]
        await start_session(broker, sid)
        await publish_chunk(broker, sid, 0)
        async with viewer(live, sid) as a, viewer(live, sid) as b:
            for v in (a, b):
                for _ in range(5):  # session, started, init, chunk, fragment
                    await v.next()
            r = await c.delete(f"/v1/sessions/{sid}")
            assert r.status_code == 200
            for v in (a, b):
                assert await v.until_closed() == 1000
                assert v.events[-1] == {"type": "ended", "reason": "deleted", "frames": 0}
        # Joining an ended session: session + ended, closed 1000.
        async with viewer(live, sid) as v:
            assert await v.until_closed() == 1000
            assert [e["type"] for e in v.events] == ["session", "ended"]
            assert v.events[0]["state"] == "ended" and v.events[1]["reason"] == "deleted"


async def test_ended_without_an_event_is_noticed_from_the_record(live_mem: Live) -> None:
    broker = broker_of(live_mem)
    async with live_mem.client() as c:
        sid = (await create(c))["id"]
    await start_session(broker, sid)
    async with viewer(live_mem, sid) as v:
        for _ in range(3):
            await v.next()
        await broker.end_session(sid, "failed", reason="worker_lost", error_code="worker_lost")
        assert await v.until_closed(timeout=10) == 1000
        assert v.events[-1] == {"type": "ended", "reason": "worker_lost", "frames": 0}


async def test_unknown_session_unauthorized_and_forbidden_close_codes() -> None:
    async with open_broker("memory") as broker:
        app = new_app(keyed_settings(), broker)
        async with live_server(app) as live:
            async with live.client(KEY_A) as c:
                sid = (await create(c))["id"]
            cases = [
                ("s_0000000000000000", KEY_A, 4404, "not_found"),
                (sid, None, 1008, "unauthorized"),
                (sid, "sk-nope", 1008, "unauthorized"),
                (sid, KEY_B, 1008, "forbidden"),
            ]
            for session_id, token, close_code, code in cases:
                async with viewer(live, session_id, token) as v:
                    err = await v.next_event()
                    assert err["type"] == "error" and err["code"] == code
                    with pytest.raises(ConnectionClosed):
                        await v.next()
                    assert v.ws.close_code == close_code
            async with viewer(live, sid, KEY_A) as v:
                assert (await v.next_event())["type"] == "session"


async def test_relay_counts_viewers_and_latency(live_mem: Live) -> None:
    from api_env import metric

    broker = broker_of(live_mem)
    async with live_mem.client() as c:
        sid = (await create(c))["id"]
    await start_session(broker, sid)
    before_viewers = metric("rollcast_viewers")
    before_latency = metric("rollcast_relay_latency_seconds_count")
    async with viewer(live_mem, sid) as v:
        await v.next_event()
        await wait_for(lambda: metric("rollcast_viewers") == before_viewers + 1)
        for _ in range(2):
            await v.next()
        await publish_chunk(broker, sid, 0)
        await v.next_event()
        msg = await v.next_media()
        assert isinstance(msg, MediaMessage)
        await wait_for(lambda: metric("rollcast_relay_latency_seconds_count") == before_latency + 1)
    await wait_for(lambda: metric("rollcast_viewers") == before_viewers)
