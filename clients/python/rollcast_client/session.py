"""`Session`: one generation session — its media/event stream and its live controls.

`Session.stream()` opens the session's WebSocket and yields typed items in order: events
(`rollcast_client.events`) and media (`MediaChunk`).  Transient drops (no close frame /
1006, 1001 going away, 1011 server error, 1012/1013/1014 try again) are repaired by
reconnecting with exponential backoff; the server then sends ``started`` and the init
segment again and continues from its newest chunk.  The stream never yields the same thing
twice: a repeated ``session`` hello, an identical ``started`` or init segment, chunks and
frames at or below the newest already yielded, and ``prompt_applied`` revisions already seen
are dropped, and a `Reconnected` event marks the seam (a session that restarted at frame 0
while the socket was down is recognised and passed on, see `_Dedupe`).  Chunks generated while the socket was
down and that the server no longer retains are lost (the frame indices jump).
The stream ends after ``ended`` (or a 1000 close); 1008 and 4404 raise `Unauthorized` /
`Forbidden` / `NotFound`.

Controls (`set_prompt`, `set_seed`, `pause`, `resume`, `stop`) go over the open WebSocket
while a stream is running and over REST otherwise (``stop`` then DELETEs the session, whose
end reason is therefore ``deleted`` rather than ``stopped``).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from rollcast_client.errors import NotFound, RollcastError, Unavailable, error_for
from rollcast_client.events import (
    ChunkEvent,
    Ended,
    ErrorEvent,
    Event,
    PromptApplied,
    Reconnected,
    SessionHello,
    Started,
    parse_event,
)
from rollcast_client.framing import FramingError, MediaChunk, MediaKind, parse_media
from rollcast_client.models import SessionCreated, SessionInfo, Transition

if TYPE_CHECKING:
    from rollcast_client.client import RollcastClient

StreamItem = Event | MediaChunk

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_NOT_FOUND = 4404
# Close codes after which a new connection may succeed (1006: no close frame at all).
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
RESTARTED = "session_restarted"  # error event: the session began again at frame 0


class StreamClosed(RollcastError):
    """The WebSocket closed with a code that is neither an end nor worth reconnecting on."""

    default_code = "stream_closed"

    def __init__(self, message: str, close_code: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.close_code = close_code


class _Dedupe:
    """What has been yielded already, so that a reconnect repeats nothing.

    Chunk and frame indices only grow within one run of a session, so anything at or below
    the newest yielded is a replay.  The exception is a *restart* (a worker took the session
    over without a snapshot and began again at frame 0): it is announced with an ``error``
    event ``session_restarted``, and if that happened while the socket was down, the first
    chunk after the reconnect has a smaller index than the newest seen (a replay never has:
    the server replays its newest complete chunk).  Either resets the counters.
    """

    def __init__(self) -> None:
        self.hello = False
        self.started: dict[str, Any] | None = None
        self.init: bytes | None = None
        self.resync = False  # the next chunk event is the first after a reconnect
        self.reset()

    def reset(self) -> None:
        self.chunk = -1  # newest chunk event yielded
        self.frame = -1  # newest frame index yielded in media
        self.revision = -1  # newest prompt_applied revision yielded

    def reconnected(self) -> None:
        self.resync = True

    def keep_event(self, event: Event) -> bool:
        if isinstance(event, SessionHello):
            first, self.hello = not self.hello, True
            return first
        if isinstance(event, ErrorEvent) and event.code == RESTARTED:
            self.reset()
            return True
        if isinstance(event, Started):
            fields = event.model_dump()
            if fields == self.started:
                return False
            self.started = fields
            return True
        if isinstance(event, ChunkEvent):
            if self.resync and event.index < self.chunk:
                self.reset()  # restarted while we were away
            self.resync = False
            if event.index <= self.chunk:
                return False
            self.chunk = event.index
            return True
        if isinstance(event, PromptApplied):
            if event.revision <= self.revision:
                return False
            self.revision = event.revision
            return True
        return True

    def keep_media(self, media: MediaChunk) -> bool:
        if media.kind is MediaKind.INIT:
            if media.payload == self.init:
                return False
            self.init = media.payload
            return True
        if media.last_frame <= self.frame:
            return False
        self.frame = media.last_frame
        return True


class Session:
    """A handle on one session of a `RollcastClient` (cheap; holds no connection by itself)."""

    def __init__(
        self,
        client: RollcastClient,
        session_id: str,
        *,
        created: SessionCreated | None = None,
        info: SessionInfo | None = None,
    ) -> None:
        self.client = client
        self.id = session_id
        self.created = created
        self.info = info
        self.started: Started | None = None  # the newest stream description
        self.ended: Ended | None = None
        self._ws: ClientConnection | None = None

    def __repr__(self) -> str:
        state = self.info.state if self.info else (self.created.state if self.created else "?")
        return f"Session({self.id!r}, state={state!r})"

    @property
    def streaming(self) -> bool:
        """True while `stream()` holds an open WebSocket (controls then go over it)."""
        return self._ws is not None

    async def refresh(self) -> SessionInfo:
        """Fetch the current `SessionInfo` into ``.info``."""
        self.info = await self.client.session_info(self.id)
        return self.info

    # -- streaming --------------------------------------------------------------------------------
    async def stream(
        self,
        *,
        decode: bool = False,
        reconnect: bool = True,
        max_reconnects: int = 10,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        open_timeout_s: float = 10.0,
    ) -> AsyncGenerator[StreamItem, None]:
        """Yield events and media until the session ends (see the module docstring).

        ``decode=True`` fills `MediaChunk.frames` with RGB frames (needs PyAV and numpy).
        ``max_reconnects``: consecutive failed tries before `Unavailable` is raised.
        Wrap in ``contextlib.aclosing`` if you may break out of the loop early.
        """
        decoder = None
        if decode:
            from rollcast_client.decode import FrameDecoder

            decoder = FrameDecoder()
        seen = _Dedupe()
        failures = 0
        close_code: int | None = None
        dropped = False
        while True:
            try:
                ws = await connect(
                    self.client.stream_url(self.id),
                    open_timeout=open_timeout_s,
                    max_size=None,
                    ping_interval=20,
                    ping_timeout=20,
                    compression=None,
                )
            except InvalidStatus as exc:  # a proxy refused the upgrade
                status = exc.response.status_code
                raise error_for(None, f"WebSocket refused with HTTP {status}", status=status) from exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                failures += 1
                if not (reconnect and dropped) or failures > max_reconnects:
                    raise Unavailable(f"cannot open the stream of {self.id}: {exc!r}") from exc
                await asyncio.sleep(_delay(failures, backoff_s, max_backoff_s))
                continue
            self._ws = ws
            last_error: ErrorEvent | None = None
            try:
                if dropped:
                    seen.reconnected()
                    yield Reconnected(attempt=failures, close_code=close_code)
                async for message in ws:
                    failures = 0
                    if isinstance(message, str):
                        event = parse_event(json.loads(message))
                        if isinstance(event, ErrorEvent):
                            last_error = event
                        if not seen.keep_event(event):
                            continue
                        if isinstance(event, Started):
                            self.started = event
                        yield event
                        if isinstance(event, Ended):
                            self.ended = event
                            return
                    else:
                        media = parse_media(message)
                        if not seen.keep_media(media):
                            continue
                        if decoder is not None:
                            media.frames = await asyncio.to_thread(decoder.decode, media)
                        yield media
            except ConnectionClosed:
                pass  # classified below from the close code
            except FramingError as exc:
                raise StreamClosed(f"malformed media message: {exc}", code="bad_media") from exc
            finally:
                self._ws = None
                await ws.close()
            close_code = ws.close_code
            if close_code == CLOSE_NORMAL:
                return
            if close_code in (CLOSE_POLICY, CLOSE_NOT_FOUND):
                default = "not_found" if close_code == CLOSE_NOT_FOUND else "unauthorized"
                code = last_error.code if last_error is not None else default
                message = last_error.message if last_error is not None else f"stream closed ({close_code})"
                raise error_for(code, message, retryable=False)
            if not reconnect or (close_code is not None and close_code not in RECONNECT_CODES):
                raise StreamClosed(
                    f"stream of {self.id} closed with code {close_code} ({ws.close_reason or 'no reason'})",
                    close_code=close_code,
                )
            dropped = True
            failures += 1
            if failures > max_reconnects:
                raise Unavailable(f"stream of {self.id} dropped {failures} times in a row")
            await asyncio.sleep(_delay(failures, backoff_s, max_backoff_s))

    # -- controls ---------------------------------------------------------------------------------
    async def set_prompt(
        self, text: str, transition: Transition | None = None, over_chunks: int | None = None
    ) -> None:
        """Change the prompt from the next chunk; watch for `PromptApplied` in the stream."""
        message: dict[str, Any] = {"type": "set_prompt", "prompt": text}
        if transition is not None:
            message["transition"] = transition
        if over_chunks is not None:
            message["over_chunks"] = over_chunks
        if not await self._send(message):
            self.info = await self.client.update_session(
                self.id, prompt=text, transition=transition, over_chunks=over_chunks
            )

    async def set_seed(self, seed: int) -> None:
        if not await self._send({"type": "set_seed", "seed": seed}):
            self.info = await self.client.update_session(self.id, seed=seed)

    async def pause(self) -> None:
        if not await self._send({"type": "pause"}):
            self.info = await self.client.update_session(self.id, paused=True)

    async def resume(self) -> None:
        if not await self._send({"type": "resume"}):
            self.info = await self.client.update_session(self.id, paused=False)

    async def stop(self) -> None:
        """End the session: ``stop`` on the open stream (reason ``stopped``), else DELETE."""
        if not await self._send({"type": "stop"}):
            await self.delete()

    async def delete(self) -> SessionInfo:
        self.info = await self.client.delete_session(self.id)
        return self.info

    async def _send(self, message: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(message))
        except ConnectionClosed:
            return False
        return True

    async def wait_ended(self) -> SessionInfo:
        """Poll REST until the session has ended (for callers that do not stream)."""
        delay = 0.1
        while True:
            try:
                info = await self.refresh()
            except NotFound:
                raise
            if info.ended:
                return info
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 1.5)


def _delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter (so many clients do not reconnect in lockstep)."""
    delay = min(cap, base * 2 ** max(0, failures - 1))
    return delay * (0.75 + 0.5 * random.random())
