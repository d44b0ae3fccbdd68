"""Server settings from the environment (prefix ROLLCAST_) via pydantic-settings.

Every command (`rollcast serve|api|worker`) builds one `Settings`; command-line flags such as
--host/--port override the environment. Examples:

    ROLLCAST_REDIS_URL=redis://127.0.0.1:6379/0 rollcast api --port 8000
    ROLLCAST_API_KEYS='{"sk-alice": {"name": "alice", "quota": 4}}' rollcast serve --host 0.0.0.0
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiKey(BaseModel):
    """An API key's owner name and its concurrent-session quota (None: the default quota)."""

    name: str
    quota: int | None = Field(default=None, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROLLCAST_", env_file=None, extra="ignore")

    # network
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = None  # base URL clients should use (stream_url); default from the request
    allow_insecure: bool = False  # listen beyond loopback without API keys
    shutdown_grace_s: float = Field(default=5.0, ge=0)  # API: serve with /readyz 503 this long after SIGTERM

    # broker
    redis_url: str | None = None  # None: in-process broker (only `rollcast serve`)
    key_prefix: str = "rollcast"
    session_ttl_s: float = Field(default=3600.0, gt=0)
    output_maxlen: int = Field(default=512, ge=16)

    # auth
    api_keys: dict[str, ApiKey] = Field(default_factory=dict)  # secret -> owner and quota
    default_quota: int = Field(default=4, ge=1)

    # model / worker
    preset: str = "tiny"
    weights: str | None = None
    device: str = "cpu"
    sparsity: float | None = Field(default=None, ge=0, lt=1)  # sparse attention (VSA) on at this sparsity
    # PyTorch intra-op threads of the engine; None: one core fewer than the machine has (at
    # least 1), leaving a core to encoding and the event loop. OpenMP threads that share a core
    # with other work wait for each other at every op: on 2 busy cores, 2 threads ran a chunk
    # ~40x slower than 1 (docs/BENCHMARKS.md).
    torch_threads: int | None = Field(default=None, ge=1)
    max_sessions: int = Field(default=2, ge=1)  # sessions a worker runs at once (batched)
    worker_id: str | None = None
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_ttl_s: float = Field(default=10.0, gt=0)
    snapshot_every_chunks: int = Field(default=8, ge=0)  # 0: never
    max_frames_limit: int | None = Field(default=None, ge=1)  # server-wide cap per session
    # Real-time pacing: generate at most this many seconds of video ahead of playback (a
    # stream starts playing when its first chunk is ready). Keeps prompt changes prompt and
    # leaves the device to other sessions; 0 generates as fast as possible (benchmarks).
    pace_lead_s: float = Field(default=1.0, ge=0)
    drain_timeout_s: float = Field(default=20.0, ge=0)
    max_job_deliveries: int = Field(default=10, ge=1)  # a session delivered more often fails (worker_lost)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # worker's own /metrics

    # encoding
    crf: float = Field(default=23.0, ge=0, le=51)
    x264_preset: str = "ultrafast"
    jpeg_quality: int = Field(default=85, ge=1, le=100)

    # viewers
    viewer_queue_messages: int = Field(default=32, ge=2)
    ws_send_buffer_bytes: int = Field(
        default=256 * 1024, ge=0
    )  # kernel send buffer per connection; 0: OS default
    slow_viewer_timeout_s: float = Field(default=10.0, gt=0)
    max_prompt_chars: int = Field(default=2000, ge=1)

    # logs
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @property
    def engine_threads(self) -> int:
        return self.torch_threads or max(1, (os.cpu_count() or 2) - 1)

    def quota_for(self, key: ApiKey | None) -> int:
        return key.quota if key is not None and key.quota is not None else self.default_quota

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)
