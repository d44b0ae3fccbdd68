"""The app factory: `create_app(settings, broker, *, worker=None)`.

The app owns its background work through its lifespan: the once-a-second refresh of the
cluster gauges, the per-session relays (`app.state.relay`), and — in `rollcast serve` —
the embedded `Worker`, whose ``run()`` starts with the app and which is drained and
stopped when the app shuts down.  The caller owns the broker (creates and closes it).

`drain(app)` is what SIGTERM triggers (see `server.api.runner`): `/readyz` turns 503 so
load balancers stop sending traffic, and an embedded worker finishes or hands back its
sessions, before the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.api.auth import KeyRing
from server.api.errors import install_error_handlers
from server.api.models import WEBSOCKET_MODELS
from server.api.relay import Relay
from server.api.routes import health, models, sessions, web
from server.api.stream import router as stream_router
from server.broker import Broker
from server.settings import Settings
from server.tasks import cancel_and_settle, settle

log = logging.getLogger("rollcast.api")

GAUGE_REFRESH_S = 1.0
API_VERSION = "1"

DESCRIPTION = """Real-time streaming video generation.

Create a session with `POST /v1/sessions`, then open its `stream_url` (a WebSocket; append
`?token=KEY` when the server uses API keys) to receive events and media and to send live
control messages.  The WebSocket messages and the binary media framing are described in
docs/protocol.md; the control message bodies are listed below as schemas too.
"""


def create_app(settings: Settings, broker: Broker, *, worker: Any = None) -> FastAPI:
    """Build the ASGI app.  ``worker``: an embedded `server.worker.Worker` (``rollcast serve``)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        refresher = asyncio.create_task(_refresh_loop(app), name="rollcast:gauges")
        if worker is not None:
            app.state.worker_task = asyncio.create_task(_run_worker(worker), name="rollcast:worker")
        try:
            yield
        finally:
            app.state.draining = True
            await app.state.relay.aclose()
            if worker is not None:
                await _stop_worker(app, worker, settings.drain_timeout_s)
            await cancel_and_settle(refresher)

    app = FastAPI(
        title="Rollcast",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.broker = broker
    app.state.worker = worker
    app.state.worker_task = None
    app.state.keys = KeyRing(settings)
    app.state.relay = Relay(broker)
    app.state.draining = False
    app.state.fast_stop = False  # Ctrl-C: stop the embedded worker without draining it
    install_error_handlers(app)
    app.include_router(sessions.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(stream_router)
    web.install_web(app)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app


async def drain(app: FastAPI) -> None:
    """Start draining: `/readyz` 503 from now on; an embedded worker drains and this waits
    for it (at most `Settings.drain_timeout_s` plus a little)."""
    app.state.draining = True
    worker = app.state.worker
    task: asyncio.Task[None] | None = app.state.worker_task
    if worker is None or task is None:
        return
    worker.request_drain()
    await settle(task, app.state.settings.drain_timeout_s + 5.0)


async def _run_worker(worker: Any) -> None:
    try:
        await worker.run()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the embedded worker failed")


async def _stop_worker(app: FastAPI, worker: Any, timeout_s: float) -> None:
    task: asyncio.Task[None] | None = app.state.worker_task
    worker.request_drain()
    if task is not None and not app.state.fast_stop:
        await settle(task, timeout_s + 5.0)
    try:
        await worker.stop()
    except Exception:
        log.exception("stopping the embedded worker failed")
    if task is not None and not task.done():
        await cancel_and_settle(task)


async def _refresh_loop(app: FastAPI) -> None:
    while True:
        await health.refresh_gauges(app)
        await asyncio.sleep(GAUGE_REFRESH_S)


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's document, adjusted to what the server really does: validation errors are
    400 `ErrorResponse` (not 422), the prompt limit is the configured one, and the WebSocket
    control bodies are listed as schemas."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for model in WEBSOCKET_MODELS:
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("CreateSession", "UpdateSession", "SetPrompt"):
        prompt = components.get(name, {}).get("properties", {}).get("prompt")
        if prompt is None:
            continue
        for branch in [prompt, *prompt.get("anyOf", [])]:
            if branch.get("type") == "string":
                branch["maxLength"] = settings.max_prompt_chars
    app.openapi_schema = schema
    return schema
