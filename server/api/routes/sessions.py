"""REST: create, list, inspect, change and delete sessions (docs/protocol.md, "REST").

Live changes (PATCH) are not applied here: they are forwarded to the worker running the
session through the broker's control stream, exactly like WebSocket control messages, so
REST and WebSocket clients see the same effects and events.  Only ending a session is done
directly (DELETE, or a ``stop`` of a still-queued session), because it must work even when
no worker holds the session.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from server.api.auth import Caller, KeyRing, require_caller
from server.api.errors import ApiError
from server.api.models import (
    SEED_MAX,
    CreateSession,
    ErrorResponse,
    SessionCreated,
    SessionInfo,
    SessionList,
    UpdateSession,
)
from server.api.routes.models import served_model_ids
from server.api.stream import forward_control
from server.broker import TERMINAL_STATES, Broker, QuotaExceeded, SessionRecord, new_session_id
from server.metrics import SESSIONS_TOTAL
from server.settings import Settings

router = APIRouter(prefix="/v1", tags=["sessions"])


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Invalid request (`invalid_request`).",
        401: "Missing or unknown API key (`unauthorized`).",
        403: "The session belongs to another API key (`forbidden`).",
        404: "Unknown or expired session (`not_found`).",
        409: "The session has ended (`session_ended`).",
        429: "The key's concurrent-session quota is used up (`quota_exceeded`).",
        503: "The broker cannot be reached (`unavailable`).",
    }
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


def public_base(request: Request, settings: Settings) -> str:
    """``http(s)://host[:port]`` clients should use: `Settings.public_url` or the request's."""
    return (settings.public_url or str(request.base_url)).rstrip("/")


def stream_url(request: Request, settings: Settings, session_id: str) -> str:
    """The WebSocket URL of a session.  Never carries the caller's token: secrets do not go
    into URLs we hand out (and log); clients append ``?token=KEY`` themselves."""
    base = public_base(request, settings)
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/v1/sessions/{session_id}/stream"


async def session_info(broker: Broker, record: SessionRecord) -> SessionInfo:
    params = record.params
    position = await broker.queue_position(record.id) if record.state == "queued" else None
    return SessionInfo(
        id=record.id,
        state=record.state,
        prompt=record.prompt,
        seed=record.seed,
        format=params.get("format", "fmp4"),
        fps=record.fps if record.fps is not None else params.get("fps"),
        max_frames=params.get("max_frames"),
        model=params.get("preset"),
        queue_position=position,
        frames_generated=record.frames_generated,
        chunks_generated=record.chunks_generated,
        width=record.width,
        height=record.height,
        codec=record.codec,
        created_at=record.created_at,
        started_at=record.started_at,
        ended_at=record.ended_at,
        end_reason=record.end_reason,
        error_code=record.error_code,
    )


async def load_session(request: Request, session_id: str, caller: Caller) -> SessionRecord:
    """The caller's session, or 404 / 403."""
    broker: Broker = request.app.state.broker
    keys: KeyRing = request.app.state.keys
    record = await broker.get_session(session_id)
    if record is None:
        raise ApiError(404, "not_found", f"no session {session_id} (unknown or expired)")
    if not keys.may_access(caller, record):
        raise ApiError(403, "forbidden", "the session belongs to another API key")
    return record


def _check_prompt(settings: Settings, prompt: str | None) -> None:
    if prompt is not None and len(prompt) > settings.max_prompt_chars:
        raise ApiError(
            400, "invalid_request", f"prompt: at most {settings.max_prompt_chars} characters allowed"
        )


@router.post(
    "/sessions",
    status_code=201,
    response_model=SessionCreated,
    responses=_errors(400, 401, 429, 503),
    summary="Create a session (queued until a worker starts it)",
)
async def create_session(
    body: CreateSession, request: Request, response: Response, caller: Caller = Depends(require_caller)
) -> SessionCreated:
    settings: Settings = request.app.state.settings
    broker: Broker = request.app.state.broker
    _check_prompt(settings, body.prompt)
    model = body.model or settings.preset
    served = await served_model_ids(request.app)
    if model not in served:
        raise ApiError(400, "invalid_request", f"model: unknown model {model!r}; served: {', '.join(served)}")
    max_frames = body.max_frames
    limit = settings.max_frames_limit
    if limit is not None:
        if max_frames is not None and max_frames > limit:
            raise ApiError(400, "invalid_request", f"max_frames: at most {limit} on this server")
        max_frames = max_frames or limit
    params = {
        "fps": body.fps,
        "max_frames": max_frames,
        "format": body.format,
        "transition": body.transition,
        "blend_chunks": body.blend_chunks,
        "preset": model,
    }
    record = SessionRecord(
        id=new_session_id(),
        prompt=body.prompt,
        seed=body.seed if body.seed is not None else secrets.randbelow(SEED_MAX + 1),
        params=params,
        api_key_id=caller.key_id,
    )
    try:
        position = await broker.create_session(record, quota=caller.quota)
    except QuotaExceeded as exc:
        raise ApiError(
            429,
            "quota_exceeded",
            f"this API key already has {exc.limit} live sessions; end one or wait",
            retryable=True,
            headers={"Retry-After": "5"},
        ) from None
    response.headers["Location"] = f"{public_base(request, settings)}/v1/sessions/{record.id}"
    return SessionCreated(
        id=record.id,
        state="queued",
        queue_position=position,
        stream_url=stream_url(request, settings, record.id),
        created_at=record.created_at,
    )


@router.get(
    "/sessions",
    response_model=SessionList,
    responses=_errors(401, 503),
    summary="The caller's live sessions, oldest first",
)
async def list_sessions(request: Request, caller: Caller = Depends(require_caller)) -> SessionList:
    broker: Broker = request.app.state.broker
    keys: KeyRing = request.app.state.keys
    records = await broker.list_sessions(caller.key_id if keys.enabled else None)
    return SessionList(sessions=[await session_info(broker, r) for r in records])


@router.get(
    "/sessions/{session_id}",
    response_model=SessionInfo,
    responses=_errors(401, 403, 404, 503),
    summary="One session",
)
async def get_session(
    session_id: str, request: Request, caller: Caller = Depends(require_caller)
) -> SessionInfo:
    record = await load_session(request, session_id, caller)
    return await session_info(request.app.state.broker, record)


@router.patch(
    "/sessions/{session_id}",
    response_model=SessionInfo,
    responses=_errors(400, 401, 403, 404, 409, 503),
    summary="Change a live session (prompt, seed, pause) — applied by its worker from the next chunk",
)
async def update_session(
    session_id: str, body: UpdateSession, request: Request, caller: Caller = Depends(require_caller)
) -> SessionInfo:
    settings: Settings = request.app.state.settings
    broker: Broker = request.app.state.broker
    record = await load_session(request, session_id, caller)
    if record.state in TERMINAL_STATES:
        raise ApiError(409, "session_ended", f"session {session_id} has ended ({record.end_reason})")
    _check_prompt(settings, body.prompt)
    messages: list[dict[str, Any]] = []
    if body.prompt is not None:
        msg: dict[str, Any] = {"type": "set_prompt", "prompt": body.prompt}
        if body.transition is not None:
            msg["transition"] = body.transition
        if body.over_chunks is not None:
            msg["over_chunks"] = body.over_chunks
        messages.append(msg)
    if body.seed is not None:
        messages.append({"type": "set_seed", "seed": body.seed})
    if body.paused is not None:
        messages.append({"type": "pause" if body.paused else "resume"})
    for message in messages:
        await forward_control(broker, session_id, message)
    record = await broker.get_session(session_id) or record
    return await session_info(broker, record)


@router.delete(
    "/sessions/{session_id}",
    response_model=SessionInfo,
    responses=_errors(401, 403, 404, 503),
    summary="End a session (viewers get `ended` with reason `deleted`); idempotent",
)
async def delete_session(
    session_id: str, request: Request, caller: Caller = Depends(require_caller)
) -> SessionInfo:
    broker: Broker = request.app.state.broker
    record = await load_session(request, session_id, caller)
    if record.state not in TERMINAL_STATES and await broker.end_session(
        session_id, "ended", reason="deleted"
    ):
        # Whoever ends a session counts its outcome (the worker sees it ended and does not).
        SESSIONS_TOTAL.labels(outcome="deleted").inc()
        ended = {"type": "ended", "reason": "deleted", "frames": record.frames_generated}
        await broker.publish_event(session_id, ended)
    record = await broker.get_session(session_id) or record
    return await session_info(broker, record)
