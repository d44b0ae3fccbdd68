"""Smoke test of the embedded mode: `create_app` + the real `Worker` ("test" preset) in one
event loop behind a real uvicorn server; a session is created over REST and watched over the
WebSocket, and the fragments it streams decode (PyAV) into the advertised picture size."""

from __future__ import annotations

import asyncio

from api_env import create, live_server, make_settings, open_broker, viewer

from engine.generator import Generator
from server.api import create_app
from server.media import MediaKind, decode_fmp4_frames
from server.worker import Worker


async def test_create_app_with_a_worker_streams_decodable_fragments() -> None:
    settings = make_settings(
        preset="test", torch_threads=1, max_sessions=1, heartbeat_interval_s=0.2, drain_timeout_s=3.0
    )
    async with open_broker("memory") as broker:
        worker = Worker(settings, broker, generator=Generator.from_preset("test"))
        app = create_app(settings, broker, worker=worker)
        async with live_server(app) as live, live.client() as c:
            for _ in range(200):
                if (await c.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await c.get("/readyz")).json()["workers_ready"] == 1
            sid = (await create(c, "a red circle moving left", seed=3, max_frames=30))["id"]
            async with viewer(live, sid) as v:
                assert await v.until_closed(timeout=60) == 1000
            info = (await c.get(f"/v1/sessions/{sid}")).json()
        assert info["state"] == "ended" and info["end_reason"] == "completed"
        assert worker.ready is False  # drained with the app
    types = [e["type"] for e in v.events]
    assert types[0] == "session" and "started" in types and types[-1] == "ended"
    started = next(e for e in v.events if e["type"] == "started")
    assert v.media[0].kind == MediaKind.INIT
    fragments = [m for m in v.media if m.kind == MediaKind.FRAGMENT]
    assert [m.chunk_index for m in fragments] == list(range(len(fragments))) and fragments
    chunk_events = [e for e in v.events if e["type"] == "chunk"]
    assert [e["index"] for e in chunk_events] == [m.chunk_index for m in fragments]
    frames = decode_fmp4_frames(v.media[0].payload, [m.payload for m in fragments])
    assert len(frames) == sum(m.frame_count for m in fragments) == info["frames_generated"] >= 30
    assert frames[0].image.shape == (started["height"], started["width"], 3)
    assert v.events[-1] == {"type": "ended", "reason": "completed", "frames": info["frames_generated"]}
