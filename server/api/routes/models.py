"""REST: ``GET /v1/models`` — the models (engine presets) this deployment serves.

A deployment serves the configured preset (`Settings.preset`, the default) plus whatever
presets live workers advertise in their heartbeats.  Picture size and frame rate come from
the preset configs; importing `engine.presets` pulls in torch (seconds), so it happens once,
in a thread, the first time the list is asked for, and never loads a model.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from fastapi import APIRouter, Depends, FastAPI, Request

from server.api.auth import Caller, require_caller
from server.api.errors import BROKER_ERRORS
from server.api.models import ErrorResponse, ModelInfo, ModelList
from server.broker import Broker
from server.settings import Settings

log = logging.getLogger("rollcast.api")

router = APIRouter(prefix="/v1", tags=["models"])


@functools.cache
def preset_dims(name: str) -> tuple[int, int, int] | None:
    """(width, height, fps) of an engine preset, or None if the engine does not know it."""
    from engine.presets import PRESETS  # heavy: imports torch; see the module docstring

    cfg = PRESETS.get(name)
    return None if cfg is None else (cfg.width, cfg.height, cfg.fps)


async def served_model_ids(app: FastAPI) -> list[str]:
    """The default preset first, then other presets advertised by live workers."""
    settings: Settings = app.state.settings
    broker: Broker = app.state.broker
    ids = [settings.preset]
    try:
        workers = await broker.list_workers()
    except BROKER_ERRORS:
        workers = []
    for w in workers:
        if w.preset and w.preset not in ids:
            ids.append(w.preset)
    return ids


@router.get(
    "/models",
    response_model=ModelList,
    responses={401: {"model": ErrorResponse, "description": "Missing or unknown API key."}},
    summary="Models this deployment serves",
)
async def list_models(request: Request, caller: Caller = Depends(require_caller)) -> ModelList:
    settings: Settings = request.app.state.settings
    models: list[ModelInfo] = []
    for model_id in await served_model_ids(request.app):
        dims = await asyncio.to_thread(preset_dims, model_id)
        if dims is None:
            log.warning("model %r is not an engine preset; not listed", model_id)
            continue
        width, height, fps = dims
        models.append(
            ModelInfo(id=model_id, width=width, height=height, fps=fps, default=model_id == settings.preset)
        )
    return ModelList(models=models)
