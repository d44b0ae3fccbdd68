"""How `Session.stream()` treats each WebSocket ending, against a scripted protocol server
(a real websockets server speaking the documented messages, so every close code can be
produced on demand): reconnect on 1011/1006 without repeating anything, stop on ``ended``
and 1000, typed errors on 1008/4404, give up after ``max_reconnects``."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from rollcast_client import (
    ChunkEvent,
    Ended,
    ErrorEvent,
    Forbidden,
    MediaChunk,
    MediaKind,
    NotFound,
    Reconnected,
    RollcastClient,
    SessionHello,
    Started,
    StreamClosed,
    Unauthorized,
    Unavailable,
)
from websockets.asyncio.server import ServerConnection, serve

pytestmark = pytest.mark.timeout(30)

INIT = b"\x00\x00\x00\x10ftypiso5" + b"\x00" * 4
STARTED = {
    "type": "started",
    "width": 64,
    "height": 48,
    "fps": 16,
    "format": "fmp4",
    "codec": "avc1.42C01E",
    "mime": 'video/mp4; codecs="avc1.42C01E"',
}


def media(kind: int, chunk: int, first: int, count: int, payload: bytes) -> bytes:
    return struct.pack(">2sBBIIHH", b"RC", 1, kind, chunk, first, count, 0) + payload


def hello(state: str = "running") -> str:
    return json.dumps({"type": "session", "protocol": 1, "id": "s_x", "state": state, "format": "fmp4"})


async def send_chunk(ws: ServerConnection, index: int) -> None:
    first = index * 12
    await ws.send(
        json.dumps(
            {
                "type": "chunk",
                "index": index,
                "first_frame": first,
                "frames": 12,
                "timings": {"denoise_ms": 1.0},
                "steps": 4,
                "prompt_revision": 0,
            }
        )
    )
    await ws.send(media(2, index, first, 12, b"frag%d" % index))


Script = Callable[[ServerConnection, int], Awaitable[None]]


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[RollcastClient, list[str]]]:
    """A server that runs ``script(ws, connection_number)``; yields a client and the paths
    of the connections it received."""
    paths: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        paths.append(ws.request.path if ws.request else "")
        await script(ws, len(paths))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1] if server.sockets else 0
        async with RollcastClient(f"http://127.0.0.1:{port}", api_key="sk-test") as client:
            yield client, paths


async def collect(client: RollcastClient, **kwargs: object) -> list[object]:
    return [item async for item in client.session("s_x").stream(backoff_s=0.01, **kwargs)]


async def test_reconnects_after_1011_and_repeats_nothing() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(hello())
        await ws.send(json.dumps(STARTED))
        await ws.send(media(1, 0, 0, 0, INIT))
        if n == 1:
            await send_chunk(ws, 0)
            await ws.close(1011, "relay error")
            return
        await send_chunk(ws, 0)  # the newest complete chunk, already seen
        await send_chunk(ws, 1)
        await ws.send(json.dumps({"type": "ended", "reason": "completed", "frames": 24}))
        await ws.close(1000)

    async with scripted(script) as (client, paths):
        items = await collect(client)
    assert len(paths) == 2 and all(p == "/v1/sessions/s_x/stream?token=sk-test" for p in paths)
    kinds = [type(i).__name__ if not isinstance(i, MediaChunk) else i.kind.name for i in items]
    assert kinds == [
        "SessionHello",
        "Started",
        "INIT",
        "ChunkEvent",
        "FRAGMENT",
        "Reconnected",
        "ChunkEvent",
        "FRAGMENT",
        "Ended",
    ]
    seam = items[5]
    assert isinstance(seam, Reconnected) and seam.close_code == 1011 and seam.attempt == 1
    assert isinstance(items[6], ChunkEvent) and items[6].index == 1
    assert isinstance(items[7], MediaChunk) and items[7].payload == b"frag1" and items[7].first_frame == 12


async def test_abnormal_close_reconnects_and_a_new_init_is_passed_on() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(hello())
        await ws.send(json.dumps(STARTED))
        await ws.send(media(1, 0, 0, 0, INIT if n == 1 else INIT + b"v2"))
        await send_chunk(ws, n - 1)
        if n == 1:
            ws.transport.abort()  # no close frame: 1006 on the client
            return
        await ws.send(json.dumps({"type": "ended", "reason": "stopped", "frames": 24}))
        await ws.close(1000)

    async with scripted(script) as (client, paths):
        items = await collect(client)
    assert len(paths) == 2
    seam = next(i for i in items if isinstance(i, Reconnected))
    assert seam.close_code == 1006
    inits = [i.payload for i in items if isinstance(i, MediaChunk) and i.kind is MediaKind.INIT]
    assert inits == [INIT, INIT + b"v2"]
    assert isinstance(items[-1], Ended) and items[-1].reason == "stopped"


async def test_no_reconnect_after_ended_or_1000() -> None:
    async def ended_then_drop(ws: ServerConnection, n: int) -> None:
        await ws.send(hello("ended"))
        await ws.send(json.dumps({"type": "ended", "reason": "deleted", "frames": 0}))
        ws.transport.abort()

    async with scripted(ended_then_drop) as (client, paths):
        items = await collect(client)
    assert len(paths) == 1 and [type(i) for i in items] == [SessionHello, Ended]

    async def plain_close(ws: ServerConnection, n: int) -> None:
        await ws.send(hello())
        await ws.close(1000)

    async with scripted(plain_close) as (client, paths):
        items = await collect(client)
    assert len(paths) == 1 and [type(i) for i in items] == [SessionHello]


@pytest.mark.parametrize(
    ("close_code", "code", "error"),
    [(4404, "not_found", NotFound), (1008, "unauthorized", Unauthorized), (1008, "forbidden", Forbidden)],
)
async def test_refusals_raise_typed_errors(close_code: int, code: str, error: type[Exception]) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"type": "error", "code": code, "message": "no", "retryable": False}))
        await ws.close(close_code, code)

    async with scripted(script) as (client, paths):
        seen: list[object] = []
        with pytest.raises(error) as raised:
            async for item in client.session("s_x").stream(backoff_s=0.01):
                seen.append(item)
    assert len(paths) == 1  # never retried
    assert raised.value.code == code  # type: ignore[attr-defined]
    assert [type(i) for i in seen] == [ErrorEvent]


async def test_gives_up_after_max_reconnects_and_other_codes_are_final() -> None:
    async def always_drop(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send(hello())
        await ws.close(1011)

    async with scripted(always_drop) as (client, paths):
        with pytest.raises(Unavailable):
            await collect(client, max_reconnects=3)
    assert len(paths) == 4  # the first connection + 3 tries

    async def protocol_error(ws: ServerConnection, n: int) -> None:
        await ws.send(hello())
        await ws.close(1003, "unsupported")

    async with scripted(protocol_error) as (client, paths):
        with pytest.raises(StreamClosed) as closed:
            await collect(client)
    assert closed.value.close_code == 1003 and len(paths) == 1


async def test_unknown_events_and_fields_are_tolerated() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(hello())
        await ws.send(json.dumps({"type": "telemetry", "gpu": 0.5}))
        await ws.send(json.dumps({**STARTED, "hdr": False}))
        await ws.send(json.dumps({"type": "ended", "reason": "completed", "frames": 0}))
        await ws.close(1000)

    async with scripted(script) as (client, _):
        items = await collect(client)
    assert items[1].type == "telemetry" and items[1].model_extra == {"gpu": 0.5}  # type: ignore[attr-defined]
    assert isinstance(items[2], Started) and items[2].model_extra == {"hdr": False}


async def test_a_restarted_session_is_passed_on_live_and_across_a_reconnect() -> None:
    restarted = {"type": "error", "code": "session_restarted", "message": "from 0", "retryable": True}

    async def live(ws: ServerConnection, n: int) -> None:
        await ws.send(hello())
        await ws.send(json.dumps(STARTED))
        await ws.send(media(1, 0, 0, 0, INIT))
        for index in (0, 1, 2):
            await send_chunk(ws, index)
        await ws.send(json.dumps(restarted))
        await ws.send(json.dumps(STARTED))
        await ws.send(media(1, 0, 0, 0, INIT))
        for index in (0, 1):
            await send_chunk(ws, index)
        await ws.send(json.dumps({"type": "ended", "reason": "stopped", "frames": 24}))
        await ws.close(1000)

    async with scripted(live) as (client, _):
        items = await collect(client)
    assert [i.index for i in items if isinstance(i, ChunkEvent)] == [0, 1, 2, 0, 1]
    assert [i.first_frame for i in items if isinstance(i, MediaChunk) and i.frame_count] == [0, 12, 24, 0, 12]

    async def away(ws: ServerConnection, n: int) -> None:
        await ws.send(hello())
        await ws.send(json.dumps(STARTED))
        await ws.send(media(1, 0, 0, 0, INIT))
        if n == 1:
            for index in (0, 1, 2):
                await send_chunk(ws, index)
            await ws.close(1012)
            return
        for index in (0, 1):  # restarted meanwhile: the replay starts below the newest seen
            await send_chunk(ws, index)
        await ws.send(json.dumps({"type": "ended", "reason": "stopped", "frames": 24}))
        await ws.close(1000)

    async with scripted(away) as (client, paths):
        items = await collect(client)
    assert len(paths) == 2
    assert [i.index for i in items if isinstance(i, ChunkEvent)] == [0, 1, 2, 0, 1]
