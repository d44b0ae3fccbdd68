"""Shared helpers for the API tests: settings, apps with a real broker, a live uvicorn server,
a WebSocket viewer, and a stand-in for the worker's output (framed media published straight
into the broker, which is all the relay sees of a worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from broker_env import REDIS_URL, delete_prefix
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.api import create_app
from server.api.runner import RollcastServer, uvicorn_config
from server.broker import Broker, BrokerConfig, MemoryBroker, RedisBroker
from server.media.framing import MediaKind, MediaMessage, pack_media, unpack_media
from server.settings import ApiKey, Settings

KEY_A, KEY_B = "sk-test-alice", "sk-test-bob"
INIT_PAYLOAD = b"\x00\x00\x00\x18ftypiso5" + b"I" * 40
CODEC = "avc1.42C01E"


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"preset": "test", "host": "127.0.0.1", "log_level": "WARNING"}
    base.update(overrides)
    return Settings(**base)


def keyed_settings(**overrides: Any) -> Settings:
    keys = {KEY_A: ApiKey(name="alice", quota=2), KEY_B: ApiKey(name="bob")}
    return make_settings(api_keys=keys, **overrides)


@contextlib.asynccontextmanager
async def open_broker(kind: str, **config: Any) -> AsyncIterator[Broker]:
    cfg = BrokerConfig(prefix=f"rollcast-test:{uuid.uuid4().hex[:12]}", **config)
    broker: Broker = MemoryBroker(cfg) if kind == "memory" else RedisBroker.from_url(REDIS_URL, cfg)
    try:
        yield broker
    finally:
        await broker.close()
        if kind == "redis":
            await delete_prefix(cfg.prefix)


@contextlib.asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[FastAPI]:
    """Run the app's lifespan (ASGITransport alone does not)."""
    async with app.router.lifespan_context(app):
        yield app


def rest_client(app: FastAPI, key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


@dataclass
class Live:
    app: FastAPI
    server: RollcastServer
    base: str  # http://127.0.0.1:PORT

    @property
    def ws_base(self) -> str:
        return "ws" + self.base[len("http") :]

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=10)


@contextlib.asynccontextmanager
async def live_server(app: FastAPI) -> AsyncIterator[Live]:
    """A real uvicorn server for ``app`` on a free loopback port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings: Settings = app.state.settings
    config = uvicorn_config(app, settings, port=port, log_level="warning", timeout_graceful_shutdown=3)
    server = RollcastServer(config, app, handle_signals=False)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        yield Live(app, server, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


def new_app(settings: Settings, broker: Broker, worker: Any = None) -> FastAPI:
    return create_app(settings, broker, worker=worker)


# -- a viewer -----------------------------------------------------------------------------------
@dataclass
class Viewer:
    ws: ClientConnection
    events: list[dict[str, Any]] = field(default_factory=list)
    media: list[MediaMessage] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # "event:TYPE" / "media:KIND:CHUNK"

    async def next(self, timeout: float = 5.0) -> dict[str, Any] | MediaMessage:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(raw, str):
            event = json.loads(raw)
            self.events.append(event)
            self.order.append(f"event:{event['type']}")
            return event
        msg = unpack_media(raw)
        self.media.append(msg)
        self.order.append(f"media:{int(msg.kind)}:{msg.chunk_index}")
        return msg

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.next(timeout)
        assert isinstance(msg, dict), f"expected an event, got media {msg.kind} {msg.chunk_index}"
        return msg

    async def next_media(self, timeout: float = 5.0) -> MediaMessage:
        msg = await self.next(timeout)
        assert isinstance(msg, MediaMessage), f"expected media, got {msg}"
        return msg

    async def until_closed(self, timeout: float = 10.0) -> int | None:
        """Read everything until the server closes; returns the close code."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ConnectionClosed):
            while time.monotonic() < deadline:
                await self.next(max(0.01, deadline - time.monotonic()))
        return self.ws.close_code

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))


@contextlib.asynccontextmanager
async def viewer(live: Live, session_id: str, token: str | None = None, **kw: Any) -> AsyncIterator[Viewer]:
    url = f"{live.ws_base}/v1/sessions/{session_id}/stream"
    if token:
        url += f"?token={token}"
    async with connect(url, max_size=None, open_timeout=5, close_timeout=2, **kw) as ws:
        yield Viewer(ws)


# -- a stand-in worker --------------------------------------------------------------------------
def fragment(index: int, frames: int = 4, size: int = 64) -> bytes:
    """A framed FRAGMENT whose payload encodes its chunk index (to check wholeness)."""
    body = index.to_bytes(4, "big") + bytes([index % 251]) * max(0, size - 4)
    return pack_media(MediaKind.FRAGMENT, index, index * frames, frames, body)


def fragment_ok(msg: MediaMessage, size: int) -> bool:
    p = msg.payload
    return (
        len(p) == size
        and int.from_bytes(p[:4], "big") == msg.chunk_index
        and p[4:] == bytes([msg.chunk_index % 251]) * (size - 4)
    )


async def start_session(broker: Broker, session_id: str, fmt: str = "fmp4") -> None:
    """What a worker does to start a session: claim it, store init, mark it running, `started`."""
    jobs = await broker.claim_jobs("fake-worker", 16)
    assert session_id in [j.session_id for j in jobs]
    if fmt == "fmp4":
        await broker.set_init_segment(session_id, pack_media(MediaKind.INIT, 0, 0, 0, INIT_PAYLOAD))
    await broker.update_session(
        session_id, state="running", width=48, height=32, fps=16.0, codec=CODEC, started_at=time.time()
    )
    started = {"type": "started", "width": 48, "height": 32, "fps": 16.0, "format": fmt}
    if fmt == "fmp4":
        started |= {"codec": CODEC, "mime": f'video/mp4; codecs="{CODEC}"'}
    await broker.publish_event(session_id, started)


async def publish_chunk(broker: Broker, session_id: str, index: int, frames: int = 4, size: int = 64) -> None:
    event = {"type": "chunk", "index": index, "first_frame": index * frames, "frames": frames}
    await broker.publish_event(session_id, {**event, "timings": {}, "steps": 4, "prompt_revision": 0})
    await broker.publish_media(session_id, fragment(index, frames, size), {"published_at": time.time()})


async def publish_jpeg_chunk(broker: Broker, session_id: str, index: int, frames: int = 3) -> None:
    event = {"type": "chunk", "index": index, "first_frame": index * frames, "frames": frames}
    await broker.publish_event(session_id, event)
    for f in range(frames):
        frame = index * frames + f
        await broker.publish_media(session_id, pack_media(MediaKind.JPEG, index, frame, 1, b"\xff\xd8jpeg"))


async def create(client: httpx.AsyncClient, prompt: str = "a red ball", **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/sessions", json={"prompt": prompt, **body})
    assert r.status_code == 201, r.text
    return r.json()


def metric(name: str, **labels: str) -> float:
    from server.metrics import REGISTRY

    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value
