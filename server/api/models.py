"""Pydantic bodies of the REST API and the WebSocket control messages (docs/protocol.md).

Every request and response body is a named model so that /openapi.json documents it; the
class names are part of the contract (they become the schema names).  Limits that depend on
the deployment (the prompt length, `Settings.max_prompt_chars`) are checked by the routes and
patched into the OpenAPI document by the app factory, so the models only carry fixed limits.
Request bodies forbid unknown fields: a misspelt field is a 400, not a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from server.broker import SessionState

SEED_MAX = 2**31 - 1
PROTOCOL_VERSION = 1

MediaFormat = Literal["fmp4", "jpeg"]
Transition = Literal["cut", "recache", "blend"]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
ChunkCount = Annotated[int, Field(ge=1, le=16)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- REST requests -----------------------------------------------------------------------------
class CreateSession(_Request):
    """Start a new generation session (it is queued until a worker takes it)."""

    prompt: str = Field(min_length=1, description="Text prompt (1..max_prompt_chars characters).")
    seed: Seed | None = Field(default=None, description="Noise seed; random when absent.")
    fps: int | None = Field(default=None, ge=1, le=60, description="Playback rate; default: the model's.")
    max_frames: int | None = Field(default=None, ge=1, description="Frames to generate; null: no limit.")
    format: MediaFormat = Field(default="fmp4", description="Media format of the stream.")
    transition: Transition = Field(default="cut", description="Default transition for prompt changes.")
    blend_chunks: ChunkCount = Field(default=2, description="Chunks a `blend` transition lasts.")
    model: str | None = Field(default=None, description="A model id from /v1/models; default: the server's.")


class UpdateSession(_Request):
    """A live change to a session; at least one field.  `transition`/`over_chunks` need `prompt`."""

    prompt: str | None = Field(default=None, min_length=1)
    transition: Transition | None = None
    over_chunks: ChunkCount | None = None
    seed: Seed | None = None
    paused: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> UpdateSession:
        if all(v is None for v in (self.prompt, self.transition, self.over_chunks, self.seed, self.paused)):
            raise ValueError("give at least one of prompt, seed, paused")
        if self.prompt is None and (self.transition is not None or self.over_chunks is not None):
            raise ValueError("transition and over_chunks only go with a new prompt")
        return self


# -- REST responses ----------------------------------------------------------------------------
class SessionCreated(BaseModel):
    """The new session; open `stream_url` (append `?token=KEY` when the server uses API keys)."""

    id: str
    state: SessionState
    queue_position: int | None
    stream_url: str
    created_at: float


class SessionInfo(BaseModel):
    """Everything known about one session."""

    id: str
    state: SessionState
    prompt: str
    seed: int
    format: MediaFormat
    fps: float | None
    max_frames: int | None
    model: str | None
    queue_position: int | None
    frames_generated: int
    chunks_generated: int
    width: int | None
    height: int | None
    codec: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    end_reason: str | None
    error_code: str | None


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class ModelInfo(BaseModel):
    """A model this deployment serves (workers run one preset each)."""

    id: str
    width: int
    height: int
    fps: int
    default: bool


class ModelList(BaseModel):
    models: list[ModelInfo]


class HealthStatus(BaseModel):
    status: Literal["ok"]


class ReadyStatus(BaseModel):
    status: Literal["ready"]
    workers_ready: int


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code (see docs/protocol.md).")
    message: str
    retryable: bool


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx response."""

    error: ErrorDetail


# -- WebSocket control (client -> server) ------------------------------------------------------
class SetPrompt(_Request):
    type: Literal["set_prompt"]
    prompt: str = Field(min_length=1)
    transition: Transition | None = None
    over_chunks: ChunkCount | None = None


class SetSeed(_Request):
    type: Literal["set_seed"]
    seed: Seed


class Pause(_Request):
    type: Literal["pause"]


class Resume(_Request):
    type: Literal["resume"]


class Stop(_Request):
    type: Literal["stop"]


ControlMessage = Annotated[SetPrompt | SetSeed | Pause | Resume | Stop, Field(discriminator="type")]
CONTROL_ADAPTER: TypeAdapter[SetPrompt | SetSeed | Pause | Resume | Stop] = TypeAdapter(ControlMessage)

# Bodies that only appear on the WebSocket; added to the OpenAPI components for reference.
WEBSOCKET_MODELS: tuple[type[BaseModel], ...] = (SetPrompt, SetSeed, Pause, Resume, Stop)
