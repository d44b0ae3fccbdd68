"""Probes, metrics, OpenAPI, the web player route, the embedded worker's life cycle and
draining (SIGTERM path) of the API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from api_env import create, live_server, make_settings, new_app, open_broker, rest_client, running_app
from fastapi import FastAPI

from server.api.routes.web import find_web_dir, install_web
from server.broker import WorkerInfo


class FakeWorker:
    """The Worker interface (run / request_drain / ready / stop), recording what happened."""

    def __init__(self) -> None:
        self.ready = False
        self.calls: list[str] = []
        self._drain = asyncio.Event()

    async def run(self) -> None:
        self.calls.append("run")
        await self._drain.wait()
        self.calls.append("drained")

    def request_drain(self) -> None:
        self.calls.append("request_drain")
        self.ready = False
        self._drain.set()

    async def stop(self) -> None:
        self.calls.append("stop")


async def test_healthz_and_readyz_follow_worker_heartbeats() -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(), broker)
        async with rest_client(app) as c:
            assert (await c.get("/healthz")).json() == {"status": "ok"}
            r = await c.get("/readyz")
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
            await broker.heartbeat(WorkerInfo(id="w1", draining=True), ttl_s=30)
            assert (await c.get("/readyz")).status_code == 503  # a draining worker is not ready
            await broker.heartbeat(WorkerInfo(id="w2"), ttl_s=30)
            r = await c.get("/readyz")
            assert r.status_code == 200 and r.json() == {"status": "ready", "workers_ready": 1}
            app.state.draining = True
            r = await c.get("/readyz")
            assert r.status_code == 503 and "draining" in r.json()["error"]["message"]
            app.state.draining = False
            await broker.remove_worker("w2")
            assert (await c.get("/readyz")).status_code == 503


async def test_readyz_with_redis_heartbeat_expiry() -> None:
    async with open_broker("redis") as broker:
        app = new_app(make_settings(), broker)
        async with rest_client(app) as c:
            assert (await c.get("/readyz")).status_code == 503
            await broker.heartbeat(WorkerInfo(id="w1"), ttl_s=0.3)
            assert (await c.get("/readyz")).status_code == 200
            await asyncio.sleep(0.5)
            assert (await c.get("/readyz")).status_code == 503


async def test_embedded_worker_runs_with_the_app_and_is_drained_on_shutdown() -> None:
    async with open_broker("memory") as broker:
        worker = FakeWorker()
        app = new_app(make_settings(), broker, worker=worker)
        async with running_app(app), rest_client(app) as c:
            await asyncio.sleep(0.05)
            assert worker.calls == ["run"]
            assert (await c.get("/readyz")).status_code == 503
            worker.ready = True
            assert (await c.get("/readyz")).json() == {"status": "ready", "workers_ready": 1}
        assert worker.calls == ["run", "request_drain", "drained", "stop"]


async def test_sigterm_drain_makes_readyz_503_then_stops_the_server() -> None:
    async with open_broker("memory") as broker:
        await broker.heartbeat(WorkerInfo(id="w1"), ttl_s=60)
        app = new_app(make_settings(shutdown_grace_s=0.6), broker)
        async with live_server(app) as live, live.client() as c:
            assert (await c.get("/readyz")).status_code == 200
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            live.server.begin_drain()
            r = await c.get("/readyz")
            assert r.status_code == 503 and "draining" in r.json()["error"]["message"]
            assert (await c.get("/healthz")).status_code == 200  # still serving during the grace
            while not live.server.should_exit and loop.time() - t0 < 5:
                await asyncio.sleep(0.05)
            assert 0.5 <= loop.time() - t0 < 3.0


async def test_metrics_exposes_gauges_from_the_broker() -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(), broker)
        async with rest_client(app) as c:
            for _ in range(3):
                await create(c)
            await broker.claim_jobs("w1", 1)
            await broker.heartbeat(WorkerInfo(id="w1"), ttl_s=30)
            r = await c.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            lines = r.text.splitlines()
            assert "rollcast_sessions_queued 2.0" in lines
            assert "rollcast_sessions_active 1.0" in lines
            assert "rollcast_workers_ready 1.0" in lines
            for name in (
                "rollcast_frames_dropped_total",
                "rollcast_viewers",
                "rollcast_relay_latency_seconds",
            ):
                assert any(line.startswith(f"# HELP {name}") for line in lines), name


async def test_openapi_names_every_body_and_documents_errors() -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(max_prompt_chars=300), broker)
        async with rest_client(app) as c:
            doc = (await c.get("/openapi.json")).json()
            assert (await c.get("/docs")).status_code == 200
    schemas = doc["components"]["schemas"]
    for name in (
        "CreateSession",
        "UpdateSession",
        "SessionCreated",
        "SessionInfo",
        "SessionList",
        "ModelInfo",
        "ModelList",
        "ErrorResponse",
        "ErrorDetail",
        "HealthStatus",
        "ReadyStatus",
        "SetPrompt",
        "SetSeed",
        "Pause",
        "Resume",
        "Stop",
    ):
        assert name in schemas, name
    assert "HTTPValidationError" not in schemas
    assert set(doc["paths"]) >= {"/v1/sessions", "/v1/sessions/{session_id}", "/v1/models", "/readyz"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (path, method)
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                assert "$ref" in body["schema"], (path, method)  # a named model, not inline
            for status, resp in op["responses"].items():
                schema = resp.get("content", {}).get("application/json", {}).get("schema")
                if schema is not None:
                    assert "$ref" in schema, (path, method, status)  # every JSON body is named
    assert doc["paths"]["/v1/sessions"]["post"]["responses"]["429"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert schemas["CreateSession"]["properties"]["prompt"]["maxLength"] == 300
    assert schemas["CreateSession"]["properties"]["seed"]["anyOf"][0]["maximum"] == 2**31 - 1


def _plain_app(web_dir: Path | None) -> FastAPI:
    app = FastAPI()
    install_web(app, web_dir)
    return app


async def test_root_serves_the_player_or_a_placeholder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_web_dir((empty,)) is None
    player = tmp_path / "web"
    player.mkdir()
    (player / "index.html").write_text("<!doctype html><title>player</title>")
    (player / "app.js").write_text("console.log('hi')")
    assert find_web_dir((empty, player)) == player

    async def get(app: Any, path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get(path)

    r = await get(_plain_app(player), "/")
    assert r.status_code == 200 and "player" in r.text and r.headers["content-type"].startswith("text/html")
    r = await get(_plain_app(player), "/static/app.js")
    assert r.status_code == 200 and r.text == "console.log('hi')"
    async with open_broker("memory") as broker:
        app = new_app(make_settings(), broker)
        async with rest_client(app) as c:
            r = await c.get("/")  # the player if one is installed, else the placeholder
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            if find_web_dir() is None:
                assert "/docs" in r.text
