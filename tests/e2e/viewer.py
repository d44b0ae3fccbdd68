"""A WebSocket viewer for the end-to-end tests: records events and media in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.media.decode import decode_fmp4_frames
from server.media.framing import MediaKind, MediaMessage, unpack_media


@dataclass
class Viewer:
    url: str
    delay_s: float = 0.0  # pause after every message: a slow viewer
    receive_buffer: int | None = None  # SO_RCVBUF: small = a slow network, not only a slow reader
    events: list[dict[str, Any]] = field(default_factory=list)
    media: list[MediaMessage] = field(default_factory=list)
    close_code: int | None = None
    ws: ClientConnection | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with connect(self.url, max_size=None, compression=None, sock=self._socket()) as ws:
            self.ws = ws
            try:
                async for message in ws:
                    if isinstance(message, bytes):
                        self.media.append(unpack_media(message))
                    else:
                        self.events.append(json.loads(message))
                    self._changed.set()
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
            except ConnectionClosed:
                pass
            self.close_code = ws.close_code
            self._changed.set()

    def _socket(self) -> socket.socket | None:
        if self.receive_buffer is None:
            return None
        host, port = urlsplit(self.url).hostname, urlsplit(self.url).port
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.connect((host, port))
        sock.setblocking(False)
        return sock

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def wait_for(self, predicate: Callable[[Viewer], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            if self.close_code is not None:
                raise AssertionError(
                    f"socket closed ({self.close_code}) before the condition; events: {self.types}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; events so far: {self.types}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def fragments(self) -> list[MediaMessage]:
        return [m for m in self.media if m.kind == MediaKind.FRAGMENT]

    def init(self) -> bytes:
        inits = [m for m in self.media if m.kind == MediaKind.INIT]
        assert inits, "no init segment received"
        return inits[0].payload

    def decoded(self) -> tuple[list[np.ndarray], list[float]]:
        """Frames of init + all fragments, and each frame's presentation time in seconds."""
        frames = decode_fmp4_frames(self.init(), [m.payload for m in self.fragments()])
        return [f.image for f in frames], [float(f.time) for f in frames]


def start(viewer: Viewer) -> asyncio.Task[None]:
    return asyncio.create_task(viewer.run())
