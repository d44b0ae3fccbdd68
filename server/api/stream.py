"""The WebSocket ``/v1/sessions/{id}/stream``: media + events out, live control in.

One connection runs three tasks: the *sender* drains the viewer's bounded queue
(`ViewerQueue`, filled by the process's `Relay`) into the socket, the *receiver* validates
client control messages and forwards them to the broker's control stream, and the
*watchdog* closes a viewer that stayed behind too long (1013).  Whichever ends first ends
the connection.  Auth, ownership and unknown sessions are answered after the handshake with
an ``error`` event and a close code (1008 / 4404), because a browser cannot read the HTTP
status of a refused handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from server.api.auth import KeyRing
from server.api.backpressure import CLOSE_SLOW_VIEWER, ViewerQueue
from server.api.errors import BROKER_ERRORS, describe_validation
from server.api.models import CONTROL_ADAPTER, PROTOCOL_VERSION, SetPrompt
from server.api.relay import Relay, ended_from_record, event_item
from server.broker import TERMINAL_STATES, Broker, SessionNotFound
from server.metrics import RELAY_LATENCY, SESSIONS_TOTAL, VIEWER_QUEUE_DEPTH, VIEWERS
from server.settings import Settings

log = logging.getLogger("rollcast.api.stream")

router = APIRouter()

CLOSE_POLICY = 1008
CLOSE_NOT_FOUND = 4404
CLOSE_TIMEOUT_S = 5.0  # how long a close frame may wait behind a full socket buffer


def _error(code: str, message: str, retryable: bool = False) -> str:
    return json.dumps({"type": "error", "code": code, "message": message, "retryable": retryable})


async def _refuse(ws: WebSocket, close_code: int, code: str, message: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(_error(code, message))
        await ws.close(close_code, message[:120])


@router.websocket("/v1/sessions/{session_id}/stream")
async def stream(websocket: WebSocket, session_id: str) -> None:
    app = websocket.app
    settings: Settings = app.state.settings
    broker: Broker = app.state.broker
    keys: KeyRing = app.state.keys
    relay: Relay = app.state.relay
    await websocket.accept()
    caller = keys.identify(websocket.query_params.get("token"))
    if caller is None:
        await _refuse(websocket, CLOSE_POLICY, "unauthorized", "missing or unknown token (?token=KEY)")
        return
    try:
        record = await broker.get_session(session_id)
    except BROKER_ERRORS:
        await _refuse(websocket, 1011, "unavailable", "the session broker cannot be reached")
        return
    if record is None:
        await _refuse(websocket, CLOSE_NOT_FOUND, "not_found", f"no session {session_id}")
        return
    if not keys.may_access(caller, record):
        await _refuse(websocket, CLOSE_POLICY, "forbidden", "the session belongs to another API key")
        return
    fmt = record.params.get("format", "fmp4")
    hello = {"type": "session", "protocol": PROTOCOL_VERSION, "id": session_id, "state": record.state}
    await websocket.send_text(json.dumps({**hello, "format": fmt}))
    if record.state in TERMINAL_STATES:
        await websocket.send_text(json.dumps(ended_from_record(record)))
        await websocket.close(1000, "session ended")
        return

    viewer = ViewerQueue(settings.viewer_queue_messages)
    relay.attach(session_id, viewer)
    VIEWERS.inc()
    tasks = [
        asyncio.create_task(_send_loop(websocket, viewer)),
        asyncio.create_task(_receive_loop(websocket, viewer, broker, settings, session_id)),
        asyncio.create_task(_watchdog(viewer, settings.slow_viewer_timeout_s)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        relay.detach(session_id, viewer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if viewer.aborted and viewer.close_code is not None:
            # The sender was cancelled (maybe blocked on a full socket): close from here.
            with contextlib.suppress(Exception):
                if websocket.application_state == WebSocketState.CONNECTED:
                    await asyncio.wait_for(
                        websocket.close(viewer.close_code, viewer.close_reason), CLOSE_TIMEOUT_S
                    )
        if viewer.dropped_frames:
            log.info(
                "viewer of %s dropped %d frames (%d chunks)",
                session_id,
                viewer.dropped_frames,
                viewer.dropped_chunks,
            )
    finally:
        relay.detach(session_id, viewer)
        VIEWERS.dec()


async def _send_loop(ws: WebSocket, viewer: ViewerQueue) -> None:
    """Drain the viewer's queue into the socket; close it when the queue says so."""
    try:
        while True:
            depth = len(viewer)
            item = await viewer.next()
            if item is None:
                break
            VIEWER_QUEUE_DEPTH.observe(depth)
            if isinstance(item.payload, bytes):
                await ws.send_bytes(item.payload)
                if item.published_at is not None:
                    RELAY_LATENCY.observe(max(0.0, time.time() - item.published_at))
            else:
                await ws.send_text(item.payload)
        if not viewer.aborted and viewer.close_code is not None:
            await ws.close(viewer.close_code, viewer.close_reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away


async def _receive_loop(
    ws: WebSocket, viewer: ViewerQueue, broker: Broker, settings: Settings, session_id: str
) -> None:
    """Validate and forward client control messages until the client disconnects."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            viewer.offer(event_item(_invalid("control messages are JSON text, not binary")))
            continue
        try:
            control = CONTROL_ADAPTER.validate_json(text)
        except ValidationError as exc:
            viewer.offer(event_item(_invalid(describe_validation(exc.errors()))))
            continue
        if isinstance(control, SetPrompt) and len(control.prompt) > settings.max_prompt_chars:
            viewer.offer(event_item(_invalid(f"prompt longer than {settings.max_prompt_chars} characters")))
            continue
        try:
            await forward_control(broker, session_id, control.model_dump(exclude_none=True))
        except SessionNotFound:
            viewer.offer(event_item({**_invalid("the session no longer exists"), "code": "not_found"}))
        except BROKER_ERRORS:
            err = {"type": "error", "code": "unavailable", "message": "broker unreachable", "retryable": True}
            viewer.offer(event_item(err))


def _invalid(message: str) -> dict[str, Any]:
    return {"type": "error", "code": "invalid_message", "message": message, "retryable": False}


async def forward_control(broker: Broker, session_id: str, message: dict[str, Any]) -> None:
    """Send one validated control message to the worker via the broker.

    A ``stop`` of a session still waiting in the queue has no worker to obey it, so the
    session is ended here (compare-and-set on ``queued``) and ``ended`` is published;
    otherwise the message goes to the control stream for the worker that runs it.
    """
    if message["type"] == "stop" and await broker.end_session(
        session_id, "ended", reason="stopped", expect=["queued"]
    ):
        SESSIONS_TOTAL.labels(outcome="stopped").inc()
        await broker.publish_event(session_id, {"type": "ended", "reason": "stopped", "frames": 0})
        return
    await broker.send_control(session_id, message)


async def _watchdog(viewer: ViewerQueue, timeout_s: float) -> None:
    """Close (1013) a viewer that stayed behind for ``timeout_s``; ends when it is closed."""
    interval = max(0.05, min(0.5, timeout_s / 4))
    while not viewer.aborted:
        await asyncio.sleep(interval)
        if viewer.overdue(timeout_s):
            log.info("closing a viewer that stayed behind for %.1f s", timeout_s)
            viewer.abort(CLOSE_SLOW_VIEWER, "viewer too slow")
    # Returning ends the connection: the endpoint cancels the (maybe blocked) sender.
