"""Running the app under uvicorn with Rollcast's shutdown rules (`rollcast api` / `serve`).

* SIGTERM drains: `/readyz` turns 503 at once; an embedded worker finishes or hands back its
  sessions (`drain(app)`); a front end without a worker keeps serving for
  `Settings.shutdown_grace_s` so load balancers notice; then uvicorn shuts down (open
  WebSockets get 1012, the lifespan stops relays and the worker).
* SIGINT (Ctrl-C) shuts down at once (still cleanly); a second signal forces the exit.
* Signals are not re-raised after a clean shutdown, so the command exits with status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from server.api.app import drain
from server.broker import Broker, make_broker
from server.settings import Settings

log = logging.getLogger("rollcast.api")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def broker_for(settings: Settings, url: str | None) -> Broker:
    """The broker for ``url`` (None: in-process) with the settings' prefix, caps and TTL."""
    return make_broker(
        url,
        prefix=settings.key_prefix,
        output_maxlen=settings.output_maxlen,
        session_ttl_s=settings.session_ttl_s,
    )


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # keep the logging set up by server.logs
        "ws_max_size": 1 << 16,  # clients only send small JSON control messages
        # Media is already compressed: deflating it would only burn CPU on every send.
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": 10,
        "lifespan": "on",
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def http_server(settings: Settings, app: FastAPI) -> RollcastServer:
    """The uvicorn server of `rollcast api` / `rollcast serve` for `app`."""
    return RollcastServer(uvicorn_config(app, settings), app, send_buffer_bytes=settings.ws_send_buffer_bytes)


class RollcastServer(uvicorn.Server):
    """uvicorn.Server with draining on SIGTERM (see the module docstring)."""

    def __init__(
        self, config: uvicorn.Config, app: FastAPI, *, handle_signals: bool = True, send_buffer_bytes: int = 0
    ) -> None:
        super().__init__(config)
        self.app = app
        self.handle_signals = handle_signals
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self.send_buffer_bytes = send_buffer_bytes

    async def serve(self, sockets: list[Any] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        if sockets is None and self.send_buffer_bytes:
            sockets = [self._listening_socket()]
        await super().serve(sockets)

    def _listening_socket(self) -> socket.socket:
        """The listening socket with a fixed kernel send buffer, inherited by connections.

        Linux autotunes a TCP send buffer up to several MB; for a viewer on a slow link that
        would queue tens of seconds of video in the kernel, out of reach of the relay's
        drop-old-fragments policy. A fixed buffer keeps the backlog where it can be dropped.
        """
        sock = self.config.bind_socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
        return sock

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.handle_signals:
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.info("second signal: exiting now")
            self.should_exit = True
            self.force_exit = True
        elif sig == signal.SIGTERM and self._loop is not None:
            log.info("SIGTERM: draining (/readyz is 503 from now on)")
            self.app.state.draining = True
            self._loop.call_soon_threadsafe(self._start_drain)
        else:
            log.info("interrupted: shutting down")
            self.app.state.draining = True
            self.app.state.fast_stop = True
            self.should_exit = True

    def begin_drain(self) -> None:
        """What SIGTERM does, callable from code (and tests) on the server's loop."""
        self.app.state.draining = True
        self._start_drain()

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await drain(self.app)
            if self.app.state.worker is None:
                await asyncio.sleep(self.app.state.settings.shutdown_grace_s)
        finally:
            self.should_exit = True

    def bound_port(self) -> int | None:
        """The port actually listened on (useful with port 0)."""
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None
