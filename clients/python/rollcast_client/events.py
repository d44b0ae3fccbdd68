"""Typed WebSocket events (server -> client JSON text messages, docs/protocol.md).

Each event type is a pydantic model named for what it says; `parse_event` picks the model
from the ``type`` field.  Models allow extra fields and `UnknownEvent` catches new types, so
a newer server never breaks an older client.  `Reconnected` is the one event the SDK makes up
itself: it marks where a dropped connection was replaced by a new one.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Event(BaseModel):
    """Base of every event; ``received_at`` is the client's clock (epoch seconds) on arrival."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    received_at: float = Field(default_factory=time.time, exclude=True)


class SessionHello(Event):
    """First message of every connection."""

    type: Literal["session"] = "session"
    protocol: int
    id: str
    state: str
    format: str = "fmp4"


class Queued(Event):
    type: Literal["queued"] = "queued"
    position: int


class Started(Event):
    """The stream description: picture size, rate and, for fMP4, the codec and MSE type."""

    type: Literal["started"] = "started"
    width: int
    height: int
    fps: float
    format: str = "fmp4"
    codec: str | None = None
    mime: str | None = None


class ChunkTimings(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    denoise_ms: float | None = None
    decode_ms: float | None = None
    encode_ms: float | None = None


class ChunkEvent(Event):
    """Sent before each chunk's media."""

    type: Literal["chunk"] = "chunk"
    index: int
    first_frame: int
    frames: int
    timings: ChunkTimings = Field(default_factory=ChunkTimings)
    steps: int | None = None
    prompt_revision: int | None = None


class PromptApplied(Event):
    """The first chunk generated with a new prompt (``frame`` is its first frame)."""

    type: Literal["prompt_applied"] = "prompt_applied"
    prompt: str
    revision: int
    transition: str | None = None
    frame: int | None = None
    chunk: int | None = None


class Paused(Event):
    type: Literal["paused"] = "paused"
    frame: int | None = None


class Resumed(Event):
    type: Literal["resumed"] = "resumed"
    frame: int | None = None


class ErrorEvent(Event):
    """A problem reported by the server; the connection may stay open."""

    type: Literal["error"] = "error"
    code: str
    message: str = ""
    retryable: bool = False


class Ended(Event):
    """The session ended (reason: completed, stopped, deleted, failed, worker_lost, expired)."""

    type: Literal["ended"] = "ended"
    reason: str
    frames: int | None = None


class UnknownEvent(Event):
    """An event type this SDK does not know (a newer server); its fields are kept as extras."""


class Reconnected(Event):
    """Made by the SDK: the WebSocket dropped (``close_code``, None if no close frame) and a
    new connection replaced it after ``attempt`` tries.  The server re-sends ``started`` and
    the init segment and continues from its newest chunk; the SDK passes on only what is new,
    so chunks generated meanwhile may be missing (see ``Session.stream``)."""

    type: Literal["reconnected"] = "reconnected"
    attempt: int
    close_code: int | None = None


Error = ErrorEvent  # the short name of the brief / docs

EVENT_TYPES: dict[str, type[Event]] = {
    "session": SessionHello,
    "queued": Queued,
    "started": Started,
    "chunk": ChunkEvent,
    "prompt_applied": PromptApplied,
    "paused": Paused,
    "resumed": Resumed,
    "error": ErrorEvent,
    "ended": Ended,
}


def parse_event(data: dict[str, Any]) -> Event:
    """The typed event for one decoded JSON message (UnknownEvent if the type is new or a
    known type's fields do not validate — a client must not die on a server's extension)."""
    kind = data.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is not None:
        try:
            return cls.model_validate(data)
        except ValidationError:
            pass
    return UnknownEvent.model_validate({**data, "type": str(kind)})
