"""Validation of the control messages a worker reads from a session's control stream.

The front end forwards viewers' WebSocket messages (and REST PATCHes) into the control stream;
the worker validates them again because it is the one that acts on them and a malformed message
must never end or corrupt a session (docs/protocol.md: answered with ``invalid_message``).
Unknown extra keys are ignored so the front end may add bookkeeping (a request id, a source).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_SEED = 2**31 - 1
MAX_OVER_CHUNKS = 16


class _Control(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class SetPrompt(_Control):
    type: Literal["set_prompt"]
    prompt: str
    transition: Literal["cut", "recache", "blend"] | None = None
    over_chunks: int | None = Field(default=None, ge=1, le=MAX_OVER_CHUNKS)


class SetSeed(_Control):
    type: Literal["set_seed"]
    seed: int = Field(ge=0, le=MAX_SEED)


class Pause(_Control):
    type: Literal["pause"]


class Resume(_Control):
    type: Literal["resume"]


class Stop(_Control):
    """``reason`` is for the front end only (not in the public protocol): a DELETE of a session
    a worker already holds is sent as ``{"type": "stop", "reason": "deleted"}`` so that the
    session ends with the right reason."""

    type: Literal["stop"]
    reason: Literal["stopped", "deleted", "expired"] = "stopped"


Control = Annotated[SetPrompt | SetSeed | Pause | Resume | Stop, Field(discriminator="type")]
_ADAPTER: TypeAdapter[Control] = TypeAdapter(Control)


class InvalidControl(ValueError):
    """A control message that cannot be applied; the text goes into the ``error`` event."""


def parse_control(raw: Any, max_prompt_chars: int) -> Control:
    """Validate one control message; raises `InvalidControl` with a readable reason."""
    if not isinstance(raw, dict):
        raise InvalidControl("a control message must be a JSON object")
    kind = raw.get("type")
    if kind not in ("set_prompt", "set_seed", "pause", "resume", "stop"):
        raise InvalidControl(f"unknown control message type {kind!r}")
    try:
        msg = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise InvalidControl(f"{kind}: {where}: {first['msg']}") from None
    if isinstance(msg, SetPrompt):
        if not msg.prompt.strip():
            raise InvalidControl("set_prompt: prompt must not be empty")
        if len(msg.prompt) > max_prompt_chars:
            raise InvalidControl(f"set_prompt: prompt is longer than {max_prompt_chars} characters")
    return msg
