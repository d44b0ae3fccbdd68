"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (can serve sessions), ``/metrics``.

``/readyz`` is 503 while this process drains (after SIGTERM), when the broker does not
answer, and until a worker is ready: a live, non-draining worker heartbeat in the broker
or, in `rollcast serve`, the embedded worker's ``ready``.  Its 503s use the error envelope
but are not counted in ``rollcast_http_errors_total`` (probes would drown real errors).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.api.errors import BROKER_ERRORS, error_body
from server.api.models import ErrorResponse, HealthStatus, ReadyStatus
from server.broker import Broker
from server.metrics import REGISTRY, SESSIONS_ACTIVE, SESSIONS_QUEUED, WORKERS_READY

log = logging.getLogger("rollcast.api")

router = APIRouter(tags=["operations"])


async def refresh_gauges(app: FastAPI) -> None:
    """Set the cluster-wide gauges from the broker (on scrape and once a second)."""
    broker: Broker = app.state.broker
    try:
        SESSIONS_QUEUED.set(await broker.count_queued())
        SESSIONS_ACTIVE.set(await broker.count_active())
        WORKERS_READY.set(await broker.ready_workers())
    except Exception as exc:  # a scrape must still answer when Redis is down
        log.debug("cannot refresh gauges: %s", exc)


@router.get("/healthz", response_model=HealthStatus, summary="The process is alive")
async def healthz() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyStatus,
    responses={503: {"model": ErrorResponse, "description": "Draining, broker down, or no worker ready."}},
    summary="Ready to serve sessions",
)
async def readyz(request: Request) -> Any:
    app = request.app
    broker: Broker = app.state.broker
    if app.state.draining:
        return _unready("draining: this process is shutting down")
    if not await broker.ping():
        return _unready("the session broker cannot be reached")
    try:
        workers = await broker.ready_workers()
    except BROKER_ERRORS:
        return _unready("the session broker cannot be reached")
    worker = app.state.worker
    embedded = worker is not None and bool(worker.ready)
    if workers == 0 and not embedded:
        return _unready("no worker is ready")
    return ReadyStatus(status="ready", workers_ready=max(workers, int(embedded)))


def _unready(message: str) -> JSONResponse:
    return JSONResponse(error_body("unavailable", message, True), status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    await refresh_gauges(request.app)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
