"""Data that crosses the broker: session records, jobs, stream entries, worker info, errors.

Both broker implementations (Redis and in-process) speak exactly these types, so the front
end and the worker never see a backend-specific shape.  `SessionRecord` and `WorkerInfo` are
pydantic models because they are validated when read back from storage and serialised into
API responses; the hot-path entries (`Job`, `OutputEntry`, `ControlEntry`) are frozen
dataclasses because thousands of them are built per minute and need no validation.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SessionState = Literal["queued", "starting", "running", "paused", "ended", "failed"]
TERMINAL_STATES: frozenset[str] = frozenset({"ended", "failed"})
LIVE_STATES: frozenset[str] = frozenset({"queued", "starting", "running", "paused"})

OutputKind = Literal["event", "media"]


def new_session_id() -> str:
    """A fresh session id: ``"s_"`` + 16 hex digits (64 random bits)."""
    return "s_" + secrets.token_hex(8)


class SessionRecord(BaseModel):
    """Everything the system knows about one session; stored as the session's state hash.

    ``params`` is the front end's validated request body as a plain dict (fps, max_frames,
    format, transition defaults, preset/model); the broker never interprets it.
    ``job_id`` is the id of the session's entry in the jobs stream, set by `create_session`,
    so that ending a session can retire its job no matter who holds it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    prompt: str
    seed: int
    params: dict[str, Any] = Field(default_factory=dict)
    state: SessionState = "queued"
    api_key_id: str | None = None
    worker_id: str | None = None
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    error_code: str | None = None
    frames_generated: int = 0
    chunks_generated: int = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    codec: str | None = None
    job_id: str | None = None


# Fields `update_session` may change; `id`/`job_id` are identity, `api_key_id` decides which
# quota set the session is in, so changing them would corrupt the indexes.
_FROZEN_FIELDS = frozenset({"id", "job_id", "api_key_id"})
_FIELD_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(Any if info.annotation is None else info.annotation)
    for name, info in SessionRecord.model_fields.items()
    if name not in _FROZEN_FIELDS
}


def validate_session_update(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate `update_session` keyword arguments; returns the coerced values.

    Raises ValueError for unknown or immutable fields, bad types, and terminal states
    (a session only becomes ``ended``/``failed`` through `end_session`, which also
    releases its queue slot and quota and starts its TTL).
    """
    out: dict[str, Any] = {}
    for name, value in fields.items():
        adapter = _FIELD_ADAPTERS.get(name)
        if adapter is None:
            raise ValueError(f"session field {name!r} cannot be updated")
        out[name] = adapter.validate_python(value)
    if out.get("state") in TERMINAL_STATES:
        raise ValueError("use end_session() to end a session")
    return out


class WorkerInfo(BaseModel):
    """What a worker advertises with each heartbeat (stored as JSON under its TTL key)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    capacity: int = 1
    active_sessions: list[str] = Field(default_factory=list)
    draining: bool = False
    preset: str = ""
    device: str = ""
    host: str = ""
    started_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def free_slots(self) -> int:
        return 0 if self.draining else max(0, self.capacity - len(self.active_sessions))


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery of a session's job to a worker.

    ``entry_id`` is the jobs-stream entry (used to ack / hand back / keep alive),
    ``worker_id`` the consumer that holds it, ``deliveries`` how many times the job has been
    delivered so far (1 on the first claim; >1 after a crash or a drain hand-back — a worker
    can give up on a session that keeps crashing workers).
    """

    session_id: str
    entry_id: str
    worker_id: str
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class OutputEntry:
    """One entry of a session's output stream.

    ``kind == "event"``: ``event`` holds the JSON event (always has a ``"type"``), ``data`` is
    empty.  ``kind == "media"``: ``data`` is the opaque, already framed media message and
    ``meta`` a small JSON dict about it (chunk index, frame count, ...).
    ``id`` is the stream id, usable as a cursor (`read_output(after_id=entry.id)`).
    """

    id: str
    kind: OutputKind
    event: dict[str, Any] | None = None
    data: bytes = b""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ControlEntry:
    """One control message (front end -> worker) with its stream id (the next cursor)."""

    id: str
    message: dict[str, Any]


class BrokerError(Exception):
    """Base class of broker errors."""


class SessionNotFound(BrokerError):
    """The session does not exist (never created, or expired after it ended)."""


class SessionExists(BrokerError):
    """`create_session` was given an id that is already in use."""


class QuotaExceeded(BrokerError):
    """The API key already has `limit` live sessions."""

    def __init__(self, api_key_id: str, limit: int) -> None:
        super().__init__(f"API key {api_key_id!r} already has {limit} live sessions")
        self.api_key_id = api_key_id
        self.limit = limit
