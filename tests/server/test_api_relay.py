"""The per-process relay without sockets: `Broker.read_output_tail`, seeding of late joiners
(also when `started` is older than the tail and must be rebuilt from the record), one reader
per session, and the reader stopping when its last viewer leaves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_env import CODEC, INIT_PAYLOAD, open_broker, publish_chunk, start_session
from broker_env import BROKER_KINDS, record

from server.api.backpressure import Outgoing, ViewerQueue
from server.api.relay import TAIL_ENTRIES, Relay
from server.broker import Broker, MemoryBroker, OutputEntry
from server.media.framing import MediaKind, unpack_media


@pytest.fixture(params=BROKER_KINDS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    async with open_broker(request.param) as b:
        yield b


async def new_session(broker: Broker, sid: str = "s_relaytest000001") -> str:
    await broker.create_session(record(sid))
    return sid


def describe(item: Outgoing) -> str:
    if isinstance(item.payload, str):
        event: dict[str, Any] = json.loads(item.payload)
        return f"{event['type']}:{event.get('index', '')}"
    msg = unpack_media(item.payload)
    return f"{msg.kind.name}:{msg.chunk_index}"


async def take(q: ViewerQueue, n: int, timeout: float = 5.0) -> list[str]:
    out = []
    for _ in range(n):
        item = await asyncio.wait_for(q.next(), timeout)
        assert item is not None
        out.append(describe(item))
    return out


async def test_read_output_tail(broker: Broker) -> None:
    sid = await new_session(broker)
    assert await broker.read_output_tail(sid, 5) == []
    assert await broker.read_output_tail("s_missing", 5) == []
    ids = [await broker.publish_event(sid, {"type": "chunk", "index": i}) for i in range(10)]
    mid = await broker.publish_media(sid, b"media", {"published_at": 1.5})
    tail = await broker.read_output_tail(sid, 4)
    assert [e.id for e in tail] == [*ids[-3:], mid]
    assert [e.event["index"] for e in tail[:3]] == [7, 8, 9]  # type: ignore[index]
    assert tail[3].kind == "media" and tail[3].data == b"media" and tail[3].meta == {"published_at": 1.5}
    assert len(await broker.read_output_tail(sid, 100)) == 11
    assert await broker.read_output_tail(sid, 0) == []


async def test_late_joiner_when_started_is_older_than_the_tail(broker: Broker) -> None:
    sid = await new_session(broker)
    await start_session(broker, sid)
    n = TAIL_ENTRIES  # 2 entries per chunk: `started` is long out of the tail
    for i in range(n):
        await publish_chunk(broker, sid, i)
    relay = Relay(broker)
    q = ViewerQueue(16)
    relay.attach(sid, q)
    try:
        assert await take(q, 4) == ["started:", "INIT:0", f"chunk:{n - 1}", f"FRAGMENT:{n - 1}"]
        assert len(q) == 0
        # The rebuilt `started` carries the record's stream description.
        started = json.loads(describe_started(relay, sid))
        assert started["codec"] == CODEC and started["width"] == 48 and started["mime"].endswith(f'"{CODEC}"')
        # The worker announcing `started` now (e.g. the record was updated first) is not
        # sent twice: same description, same init segment.
        await broker.publish_event(
            sid,
            {"type": "started", "width": 48, "height": 32, "fps": 16.0, "format": "fmp4", "codec": CODEC},
        )
        await publish_chunk(broker, sid, n)
        assert await take(q, 2) == [f"chunk:{n}", f"FRAGMENT:{n}"]
    finally:
        await relay.aclose()


def describe_started(relay: Relay, sid: str) -> str:
    started = relay.sessions[sid].started
    assert started is not None and isinstance(started.payload, str)
    return started.payload


async def test_one_reader_per_session_and_it_stops_without_viewers(broker: Broker) -> None:
    sid = await new_session(broker)
    relay = Relay(broker)
    a, b = ViewerQueue(8), ViewerQueue(8)
    relay.attach(sid, a)
    relay.attach(sid, b)
    assert len(relay.sessions) == 1
    reader = relay.sessions[sid].task
    assert await take(a, 1) == ["queued:"] and await take(b, 1) == ["queued:"]
    await start_session(broker, sid)
    await publish_chunk(broker, sid, 0)
    for q in (a, b):
        assert await take(q, 4) == ["started:", "INIT:0", "chunk:0", "FRAGMENT:0"]
    relay.detach(sid, a)
    relay.detach(sid, b)
    assert reader is not None
    await asyncio.wait_for(reader, 5)  # exits at its next wake-up
    assert relay.sessions == {}
    # A new viewer starts a new reader, seeded from the tail.
    c = ViewerQueue(8)
    relay.attach(sid, c)
    assert await take(c, 4) == ["started:", "INIT:0", "chunk:0", "FRAGMENT:0"]
    await relay.aclose()
    assert c.aborted and c.close_code == 1001


async def test_init_segment_is_framed_if_stored_raw() -> None:
    async with open_broker("memory") as broker:
        sid = await new_session(broker)
        await broker.claim_jobs("w", 1)
        await broker.set_init_segment(sid, INIT_PAYLOAD)  # raw ftyp+moov, not framed
        await broker.update_session(sid, state="running", width=48, height=32, fps=16.0, codec=CODEC)
        relay = Relay(broker)
        q = ViewerQueue(8)
        relay.attach(sid, q)
        try:
            await take(q, 1)
            item = await asyncio.wait_for(q.next(), 5)
            assert item is not None and isinstance(item.payload, bytes)
            msg = unpack_media(item.payload)
            assert msg.kind == MediaKind.INIT and msg.payload == INIT_PAYLOAD
        finally:
            await relay.aclose()


async def test_a_restart_by_the_worker_is_relayed_again() -> None:
    async with open_broker("memory") as broker:
        sid = await new_session(broker)
        await start_session(broker, sid)
        relay = Relay(broker)
        q = ViewerQueue(16)
        relay.attach(sid, q)
        try:
            assert await take(q, 2) == ["started:", "INIT:0"]
            await publish_chunk(broker, sid, 0)
            assert await take(q, 2) == ["chunk:0", "FRAGMENT:0"]
            # The worker lost the session and restarts it from frame 0 (same description).
            await broker.publish_event(sid, {"type": "error", "code": "session_restarted"})
            await broker.publish_event(
                sid,
                {"type": "started", "width": 48, "height": 32, "fps": 16.0, "format": "fmp4", "codec": CODEC},
            )
            await publish_chunk(broker, sid, 0)
            assert await take(q, 5) == ["error:", "started:", "INIT:0", "chunk:0", "FRAGMENT:0"]
        finally:
            await relay.aclose()


class CancelToTimeoutBroker(MemoryBroker):
    """A broker client that reports a cancelled blocking read as a timeout (as a socket client
    may when the cancel lands while its own read deadline fires)."""

    async def read_output(
        self, session_id: str, after_id: str = "0", block_s: float = 0.0, count: int = 100
    ) -> list[OutputEntry]:
        try:
            return await super().read_output(session_id, after_id, block_s, count)
        except asyncio.CancelledError:
            raise TimeoutError("read cancelled") from None


async def test_shutdown_stops_a_reader_whose_broker_turns_cancel_into_timeout() -> None:
    broker = CancelToTimeoutBroker()
    sid = await new_session(broker)
    relay = Relay(broker)
    q = ViewerQueue(8)
    relay.attach(sid, q)
    assert await take(q, 1) == ["queued:"]
    reader = relay.sessions[sid].task
    assert reader is not None
    await asyncio.sleep(0.05)  # the reader is inside its blocking read
    await asyncio.wait_for(relay.aclose(), 3)
    assert reader.done() and q.aborted and q.close_code == 1001
