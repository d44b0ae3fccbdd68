"""REST bodies returned by the server (docs/protocol.md, "REST"); extra fields are kept so
a newer server's additions do not break this client."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

SessionState = Literal["queued", "starting", "running", "paused", "ended", "failed"]
Transition = Literal["cut", "recache", "blend"]
MediaFormat = Literal["fmp4", "jpeg"]

TERMINAL_STATES = frozenset({"ended", "failed"})


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class SessionCreated(_Body):
    id: str
    state: str
    queue_position: int | None = None
    stream_url: str
    created_at: float


class SessionInfo(_Body):
    id: str
    state: str
    prompt: str
    seed: int
    format: str = "fmp4"
    fps: float | None = None
    max_frames: int | None = None
    model: str | None = None
    queue_position: int | None = None
    frames_generated: int = 0
    chunks_generated: int = 0
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    error_code: str | None = None

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL_STATES


class ModelInfo(_Body):
    id: str
    width: int
    height: int
    fps: int
    default: bool = False
