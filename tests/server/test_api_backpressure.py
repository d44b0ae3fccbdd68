"""Backpressure: the per-viewer queue's drop policy (unit), and over real sockets a slow
viewer losing whole old fragments while a fast viewer of the same session gets everything,
bounded queues, the drop counter, and a stuck viewer closed with 1013."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from typing import Any

from api_env import (
    Live,
    create,
    fragment_ok,
    live_server,
    make_settings,
    metric,
    new_app,
    open_broker,
    publish_chunk,
    start_session,
    viewer,
)
from websockets.exceptions import ConnectionClosed

from server.api.backpressure import CLOSE_SLOW_VIEWER, Outgoing, ViewerQueue
from server.media.framing import MediaKind


def ev(name: str) -> Outgoing:
    return Outgoing(f'{{"type":"{name}"}}')


def chunk_ev(chunk: int) -> Outgoing:
    return Outgoing(f'{{"type":"chunk","index":{chunk}}}', chunk=chunk)


def frag(chunk: int, frames: int = 4) -> Outgoing:
    return Outgoing(b"F%d" % chunk, media=True, chunk=chunk, frames=frames)


def jpeg(chunk: int) -> Outgoing:
    return Outgoing(b"J%d" % chunk, media=True, chunk=chunk, frames=1)


def drain(q: ViewerQueue) -> list[Any]:
    """Everything queued, in order (what the sender would send next)."""

    async def take() -> list[Any]:
        out: list[Any] = []
        while len(q):
            item = await q.next()
            assert item is not None
            out.append(item.payload)
        return out

    return asyncio.run(take())


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_full_queue_drops_the_oldest_whole_chunk_never_init_or_other_events() -> None:
    before = metric("rollcast_frames_dropped_total", reason="slow_viewer")
    q = ViewerQueue(5)
    for item in (ev("started"), Outgoing(b"INIT"), chunk_ev(0), frag(0), ev("prompt_applied")):
        q.offer(item)
    q.offer(chunk_ev(1))  # full: chunk 0 (event + fragment) goes
    q.offer(frag(1))
    assert drain(q) == ['{"type":"started"}', b"INIT", '{"type":"prompt_applied"}', *payloads(1)]
    assert (q.dropped_chunks, q.dropped_frames) == (1, 4)
    assert metric("rollcast_frames_dropped_total", reason="slow_viewer") == before + 4


def payloads(chunk: int) -> list[Any]:
    return [chunk_ev(chunk).payload, frag(chunk).payload]


def test_drops_are_oldest_first_and_the_queue_stays_bounded() -> None:
    q = ViewerQueue(6)
    for i in range(40):
        q.offer(chunk_ev(i))
        q.offer(frag(i))
        assert len(q) <= 6
    got = drain(q)
    kept = [int(p[1:]) for p in got if isinstance(p, bytes)]
    assert kept == [37, 38, 39]  # the newest survive, in order, each with its event
    assert got == [p for c in kept for p in payloads(c)]
    assert q.dropped_chunks == 37 and q.dropped_frames == 4 * 37
    assert q.max_depth == 6


def test_jpeg_chunks_are_dropped_whole_including_frames_that_arrive_later() -> None:
    q = ViewerQueue(4)
    q.offer(chunk_ev(0))
    for _ in range(3):
        q.offer(jpeg(0))  # full
    q.offer(chunk_ev(1))  # drops chunk 0 (event + 3 frames)
    q.offer(jpeg(1))
    q.offer(jpeg(1))
    q.offer(ev("paused"))  # now full
    q.offer(jpeg(1))  # chunk 1 goes, with this frame of it
    q.offer(jpeg(1))  # ... and the ones still to come
    q.offer(chunk_ev(2))
    q.offer(jpeg(2))
    assert drain(q) == ['{"type":"paused"}', *[chunk_ev(2).payload, b"J2"]]
    assert q.dropped_chunks == 2 and q.dropped_frames == 3 + 4


def test_a_partly_sent_chunk_is_completed_not_cut() -> None:
    async def scenario() -> tuple[list[Any], ViewerQueue]:
        q = ViewerQueue(3)
        q.offer(chunk_ev(0))
        q.offer(jpeg(0))
        first = await q.next()  # chunk 0 has begun: its event is on its way
        assert first is not None
        q.offer(jpeg(0))
        q.offer(chunk_ev(1))  # full: J0, J0, chunk 1 event
        q.offer(jpeg(1))  # full: chunk 1 goes, not the rest of chunk 0
        q.offer(jpeg(0))  # the last frame of chunk 0 still gets in (over the limit)
        out = [first.payload]
        while len(q):
            item = await q.next()
            assert item is not None
            out.append(item.payload)
        return out, q

    got, q = asyncio.run(scenario())
    assert got == [chunk_ev(0).payload, b"J0", b"J0", b"J0"]
    assert q.dropped_chunks == 1 and q.dropped_frames == 1


def test_behind_tracking_and_overdue() -> None:
    clock = Clock()
    q = ViewerQueue(4, clock=clock)
    for i in range(4):
        q.offer(frag(i))
    assert q.behind_since is None
    q.offer(frag(4))  # full: behind from now
    assert q.behind_since == 100.0 and not q.overdue(1.0)
    clock.t = 101.5
    assert q.overdue(1.0)

    async def consume(n: int) -> None:
        for _ in range(n):
            await q.next()

    asyncio.run(consume(1))  # 3 left: still more than half full
    assert q.overdue(1.0)
    asyncio.run(consume(1))  # 2 left = half: caught up
    assert q.behind_since is None and not q.overdue(1.0)


def test_only_undroppable_events_twice_the_limit_aborts_with_1013() -> None:
    q = ViewerQueue(3)
    for _ in range(6):
        q.offer(ev("prompt_applied"))
    assert not q.closed
    q.offer(ev("paused"))
    assert q.aborted and q.close_code == CLOSE_SLOW_VIEWER and len(q) == 0


def test_finish_sends_the_rest_then_closes() -> None:
    async def scenario() -> tuple[list[Any], int | None]:
        q = ViewerQueue(4)
        q.offer(ev("ended"))
        q.finish(1000)
        q.offer(ev("late"))  # ignored after finish
        out = []
        while (item := await q.next()) is not None:
            out.append(item.payload)
        return out, q.close_code

    assert asyncio.run(scenario()) == (['{"type":"ended"}'], 1000)


# -- over real sockets ----------------------------------------------------------------------------
def small_buffer_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive buffer, so a viewer that does not read fills up fast."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    return s


def port_of(live: Live) -> int:
    return int(live.base.rsplit(":", 1)[1])


async def test_slow_viewer_loses_whole_fragments_fast_viewer_gets_all() -> None:
    size, n = 128 * 1024, 80
    settings = make_settings(viewer_queue_messages=8, slow_viewer_timeout_s=60)
    async with open_broker("memory", output_maxlen=64) as broker:
        app = new_app(settings, broker)
        async with live_server(app) as live:
            async with live.client() as c:
                sid = (await create(c))["id"]
            await start_session(broker, sid)
            before = metric("rollcast_frames_dropped_total", reason="slow_viewer")
            async with (
                viewer(live, sid) as fast,
                viewer(live, sid, sock=small_buffer_socket(port_of(live)), max_queue=1) as slow,
            ):
                await fast.next_event()
                await asyncio.sleep(0.1)  # both attached

                async def read_fast() -> None:
                    while True:
                        await fast.next(timeout=10)

                reader = asyncio.create_task(read_fast())
                queues = list(app.state.relay.sessions[sid].viewers)
                assert len(queues) == 2
                for i in range(n):
                    await publish_chunk(broker, sid, i, size=size)
                    await asyncio.sleep(0.004)
                await broker.publish_event(sid, {"type": "ended", "reason": "completed", "frames": 4 * n})
                await asyncio.gather(reader, return_exceptions=True)
                assert fast.ws.close_code == 1000
                max_depths = [q.max_depth for q in queues]
                # Now the slow one reads what is left for it.
                assert await slow.until_closed(timeout=20) == 1000
    fast_chunks = [m.chunk_index for m in fast.media if m.kind == MediaKind.FRAGMENT]
    assert fast_chunks == list(range(n))
    slow_chunks = [m.chunk_index for m in slow.media if m.kind == MediaKind.FRAGMENT]
    assert slow.media[0].kind == MediaKind.INIT
    assert slow_chunks == sorted(set(slow_chunks)) and len(slow_chunks) < n  # in order, some lost
    assert any(b - a > 1 for a, b in itertools.pairwise(slow_chunks))  # a jump
    assert slow_chunks[-1] == n - 1  # it continues with the newest
    assert all(fragment_ok(m, size) for m in slow.media[1:])  # whole fragments only
    assert [e["index"] for e in slow.events if e["type"] == "chunk"] == slow_chunks  # dropped whole
    dropped = metric("rollcast_frames_dropped_total", reason="slow_viewer") - before
    assert dropped == 4 * (n - len(slow_chunks))
    assert max(max_depths) <= settings.viewer_queue_messages  # bounded memory per viewer


async def test_stuck_viewer_is_closed_with_1013_and_others_continue() -> None:
    settings = make_settings(viewer_queue_messages=4, slow_viewer_timeout_s=0.8)
    async with open_broker("memory", output_maxlen=64) as broker:
        app = new_app(settings, broker)
        async with live_server(app) as live:
            async with live.client() as c:
                sid = (await create(c))["id"]
            await start_session(broker, sid)
            async with (
                viewer(live, sid) as fast,
                viewer(live, sid, sock=small_buffer_socket(port_of(live)), max_queue=1) as stuck,
            ):
                await fast.next_event()
                await asyncio.sleep(0.1)
                got: list[int] = []

                async def read_fast() -> None:
                    while True:
                        msg = await fast.next(timeout=10)
                        if not isinstance(msg, dict) and msg.kind == MediaKind.FRAGMENT:
                            got.append(msg.chunk_index)

                reader = asyncio.create_task(read_fast())
                t0 = time.monotonic()
                i = 0
                while time.monotonic() - t0 < 2.5:
                    await publish_chunk(broker, sid, i, size=128 * 1024)
                    i += 1
                    await asyncio.sleep(0.01)
                relay = app.state.relay.sessions[sid]
                assert len(relay.viewers) == 1  # the stuck one was dropped from the relay
                code = await stuck.until_closed(timeout=10)
                assert code == CLOSE_SLOW_VIEWER
                await publish_chunk(broker, sid, i)
                await asyncio.sleep(0.2)
                reader.cancel()
                assert got == list(range(i + 1))  # the fast viewer never lost anything
                try:
                    await fast.ws.ping()
                except ConnectionClosed as exc:  # pragma: no cover - failure path
                    raise AssertionError("the fast viewer was closed too") from exc


def test_a_restarted_stream_reusing_chunk_indices_is_not_dropped_by_mistake() -> None:
    q = ViewerQueue(2)
    q.offer(chunk_ev(0))
    q.offer(frag(0))
    q.offer(chunk_ev(1))  # drops chunk 0 of epoch 0
    assert q.dropped_chunks == 1
    again = (chunk_ev(0), frag(0))
    restarted = [Outgoing(c.payload, media=c.media, chunk=c.chunk, frames=c.frames, epoch=1) for c in again]
    drain(q)
    for item in restarted:  # chunk 0 again, after a restart: a different chunk
        q.offer(item)
    assert drain(q) == payloads(0) and q.dropped_chunks == 1
