"""Per-process fan-out: ONE reader task per watched session reads the broker's output stream
and offers every message to the bounded queues of this process's viewers of that session.

Cursor and late-join logic (the reader keeps just enough state to seed a new viewer):

* On start the reader reads the stream's *tail* (`Broker.read_output_tail`, the newest
  `TAIL_ENTRIES` entries) and continues after its last entry (from ``"0"`` if the stream is
  empty).  So a reader started before the session starts relays everything from the first
  entry, and one started mid-stream does not replay retained history.
* ``started`` state: the last `started` event seen (in the tail or live); if the tail is too
  short to contain it but the record says the session started, it is rebuilt from the
  `SessionRecord` (width/height/fps/codec/format).  The fMP4 init segment is fetched with
  `get_init_segment` whenever a `started` is seen (workers store it before publishing).
* ``recent``: the entries since the `chunk` event of the newest *complete* chunk (its media
  frame counts add up to the event's ``frames``, or the next chunk has begun), plus what came
  after it (the next, partial chunk and events).
* A viewer joining gets: ``queued`` {position} while queued; otherwise ``started``, then the
  init segment, then ``recent``; then live messages.  Attaching and fanning out never
  interleave (both run without awaiting), so a viewer sees no gap and no duplicate.  A viewer
  that joins before the session starts thus gets every chunk; a late joiner gets init + the
  newest complete chunk at once.
* While the session is queued, the reader polls `queue_position` every `QUEUE_POLL_S` and
  sends ``queued`` when the position changes.  When ``ended`` is relayed, every viewer is
  closed with 1000 after its queue drains.  If the session ends without an ``ended`` event
  (or expires), one is synthesised from the record after a grace period.

The reader offers to queues without awaiting (`ViewerQueue.offer`), yielding to the loop
between entries so viewers' senders keep pace; a slow viewer only loses its own messages.
It stops by itself once it has no viewers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from dataclasses import dataclass
from typing import Any

from server.api.backpressure import Outgoing, ViewerQueue
from server.api.errors import BROKER_ERRORS
from server.broker import TERMINAL_STATES, Broker, OutputEntry, SessionRecord
from server.media.framing import HEADER_SIZE, MediaKind, pack_media

log = logging.getLogger("rollcast.api.relay")

TAIL_ENTRIES = 64
QUEUE_POLL_S = 0.5
RECORD_CHECK_S = 2.0
READ_COUNT = 64
RETRY_S = 1.0
CLOSE_S = 5.0  # how long shutdown waits for the readers to stop
RECENT_LIMIT = 256  # a stream with no chunk events cannot grow `recent` without bound
_HEADER = struct.Struct(">2sBBIIH")
CLOSE_NORMAL = 1000


def event_item(event: dict[str, Any]) -> Outgoing:
    return Outgoing(json.dumps(event, separators=(",", ":")))


def started_from_record(record: SessionRecord) -> dict[str, Any]:
    fmt = record.params.get("format", "fmp4")
    fps = record.fps if record.fps is not None else record.params.get("fps")
    event: dict[str, Any] = {"type": "started", "width": record.width, "height": record.height, "fps": fps}
    event["format"] = fmt
    if fmt == "fmp4":
        event["codec"] = record.codec
        event["mime"] = f'video/mp4; codecs="{record.codec}"'
    return event


def ended_from_record(record: SessionRecord | None) -> dict[str, Any]:
    if record is None:
        return {"type": "ended", "reason": "expired", "frames": None}
    reason = record.end_reason or ("failed" if record.state == "failed" else "completed")
    return {"type": "ended", "reason": reason, "frames": record.frames_generated}


def _media_header(data: bytes) -> tuple[int, int, int] | None:
    """(kind, chunk index, frame count) of a framed media message, or None if malformed."""
    if len(data) < HEADER_SIZE:
        return None
    magic, _version, kind, chunk, _first, count = _HEADER.unpack_from(data)
    return (kind, chunk, count) if magic == b"RC" else None


@dataclass
class _Pending:
    """The newest chunk whose media is still arriving; ``start`` is its index in ``recent``."""

    index: int
    expected: int | None
    got: int
    start: int


class SessionRelay:
    """The reader task and seed state of one session in this process."""

    def __init__(self, broker: Broker, session_id: str, on_exit: Any) -> None:
        self.broker = broker
        self.session_id = session_id
        self.viewers: set[ViewerQueue] = set()
        self.waiting: list[ViewerQueue] = []  # attached before the reader's first read finished
        self.is_ready = False
        self.started: Outgoing | None = None
        self.started_event: dict[str, Any] | None = None
        self.init: Outgoing | None = None
        self.recent: list[Outgoing] = []
        self.position: int | None = None
        self.ended = False
        self._pending: _Pending | None = None
        self._epoch = 0  # +1 per `started` relayed (see Outgoing.epoch)
        self._rebuilt = False  # `started` was rebuilt from the record, not read from the stream
        self._format = "fmp4"
        self._on_exit = on_exit
        self.task: asyncio.Task[None] | None = None

    # -- viewers --------------------------------------------------------------------------------
    def add(self, viewer: ViewerQueue) -> None:
        if self.is_ready:
            self.seed(viewer)
            self.viewers.add(viewer)
        else:
            self.waiting.append(viewer)

    def remove(self, viewer: ViewerQueue) -> None:
        self.viewers.discard(viewer)
        if viewer in self.waiting:
            self.waiting.remove(viewer)

    def seed(self, viewer: ViewerQueue) -> None:
        """Give a new viewer the current state; must run without awaiting (see module doc)."""
        if self.started is None:
            if self.position is not None:
                viewer.offer(event_item({"type": "queued", "position": self.position}))
        else:
            viewer.offer(self.started)
            if self.init is not None:
                viewer.offer(self.init)
        for item in self.recent:
            viewer.offer(item)
        if self.ended:
            viewer.finish(CLOSE_NORMAL, "session ended")

    def _fanout(self, item: Outgoing) -> None:
        for viewer in list(self.viewers):
            viewer.offer(item)

    # -- the reader -----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            cursor = await self._start()
            await self._loop(cursor)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relay of session %s failed", self.session_id)
            for viewer in [*self.viewers, *self.waiting]:
                viewer.abort(1011, "relay error")
        finally:
            self._on_exit(self)

    async def _start(self) -> str:
        while True:
            try:
                record = await self.broker.get_session(self.session_id)
                tail = await self.broker.read_output_tail(self.session_id, TAIL_ENTRIES)
                position = await self.broker.queue_position(self.session_id)
                break
            except BROKER_ERRORS as exc:
                _raise_if_cancelling()
                log.warning("relay of %s cannot reach the broker (%s); retrying", self.session_id, exc)
                await asyncio.sleep(RETRY_S)
        if record is not None:
            self._format = str(record.params.get("format", "fmp4"))
        self.position = position
        has_started = any(e.kind == "event" and (e.event or {}).get("type") == "started" for e in tail)
        if not has_started and record is not None and _has_started(record):
            self.started_event = started_from_record(record)
            self.started = event_item(self.started_event)
            self._rebuilt = True
            await self._load_init()
        seen_start = False
        for entry in tail:
            if entry.kind == "event" and (entry.event or {}).get("type") in ("chunk", "started"):
                seen_start = True
            if entry.kind == "media" and not seen_start:
                continue  # the end of a chunk whose beginning is older than the tail
            await self._absorb(entry)
        if record is None and not self.ended:
            await self._absorb_event(ended_from_record(None))
        # Seed the viewers that attached meanwhile; no await between here and the first
        # fan-out of a live entry, so they neither miss nor repeat anything.
        self.is_ready = True
        for viewer in self.waiting:
            self.seed(viewer)
            self.viewers.add(viewer)
        self.waiting.clear()
        return tail[-1].id if tail else "0"

    async def _loop(self, cursor: str) -> None:
        last_poll = last_check = time.monotonic()
        terminal_seen = False
        while (self.viewers or self.waiting) and not self.ended:
            try:
                entries = await self.broker.read_output(
                    self.session_id, cursor, block_s=QUEUE_POLL_S, count=READ_COUNT
                )
                for entry in entries:
                    cursor = entry.id
                    await self._absorb(entry)
                    await asyncio.sleep(0)  # let viewers' senders run between entries
                    if self.ended:
                        return
                now = time.monotonic()
                if self.started is None and now - last_poll >= QUEUE_POLL_S:
                    last_poll = now
                    await self._poll_position()
                if not entries and now - last_check >= RECORD_CHECK_S:
                    last_check = now
                    record = await self.broker.get_session(self.session_id)
                    if record is None or record.state in TERMINAL_STATES:
                        # One check period of grace for the `ended` event on its way (DELETE
                        # ends the record before publishing it).
                        if terminal_seen or record is None:
                            await self._absorb_event(ended_from_record(record))
                            return
                        terminal_seen = True
            except BROKER_ERRORS as exc:
                _raise_if_cancelling()
                # Viewers stay connected; they just get nothing until the broker is back.
                log.warning("relay of %s lost the broker (%s); retrying", self.session_id, exc)
                await asyncio.sleep(RETRY_S)

    async def _poll_position(self) -> None:
        position = await self.broker.queue_position(self.session_id)
        if position != self.position:
            self.position = position
            if position is not None:
                self._fanout(event_item({"type": "queued", "position": position}))

    async def _load_init(self) -> None:
        if self._format != "fmp4":
            return
        blob = await self.broker.get_init_segment(self.session_id)
        if blob is None:
            log.warning("session %s started without an init segment", self.session_id)
            self.init = None
            return
        framed = blob if _media_header(blob) is not None else pack_media(MediaKind.INIT, 0, 0, 0, blob)
        self.init = Outgoing(framed)

    # -- bookkeeping per entry --------------------------------------------------------------------
    async def _absorb(self, entry: OutputEntry) -> None:
        if entry.kind == "event":
            await self._absorb_event(entry.event or {})
        else:
            self._absorb_media(entry)

    async def _absorb_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "started":
            old_init = self.init.payload if self.init is not None else None
            await self._load_init()
            new_init = self.init.payload if self.init is not None else None
            known = self.started_event
            if self._rebuilt and known is not None and _same_start(known, event) and old_init == new_init:
                self._rebuilt = False
                return  # a duplicate of what was rebuilt from the record
            # A genuine (re)start: chunk indices may begin again, so a new epoch.
            self._rebuilt = False
            self._epoch += 1
            self.started_event = dict(event)
            self.started = event_item(event)
            self.position = None
            self.recent, self._pending = [], None
            self._fanout(self.started)
            if self.init is not None:
                self._fanout(self.init)
            return
        item = event_item(event)
        if kind == "chunk":
            if self._pending is not None:
                self._trim_to(self._pending.start)
            frames = event.get("frames")
            expected = int(frames) if isinstance(frames, int) else None
            index = event.get("index")
            item.chunk = index if isinstance(index, int) and index >= 0 else -1
            item.epoch = self._epoch
            self._pending = _Pending(item.chunk, expected, 0, len(self.recent))
        self._remember(item)
        self._fanout(item)
        if kind == "ended":
            self.ended = True
            for viewer in list(self.viewers):
                viewer.finish(CLOSE_NORMAL, "session ended")

    def _absorb_media(self, entry: OutputEntry) -> None:
        header = _media_header(entry.data)
        if header is None:
            log.warning("session %s: dropping a malformed media entry %s", self.session_id, entry.id)
            return
        kind, chunk, frames = header
        if kind == MediaKind.INIT:
            self.init = Outgoing(entry.data)
            self._fanout(self.init)
            return
        published = entry.meta.get("published_at")
        item = Outgoing(
            entry.data,
            media=True,
            chunk=chunk,
            frames=frames,
            published_at=float(published) if isinstance(published, (int, float)) else None,
            epoch=self._epoch,
        )
        self._remember(item)
        self._fanout(item)
        pending = self._pending
        if pending is not None and chunk == pending.index:
            pending.got += frames
            if pending.expected is not None and pending.got >= pending.expected:
                self._trim_to(pending.start)
                self._pending = None

    def _remember(self, item: Outgoing) -> None:
        self.recent.append(item)
        if len(self.recent) > RECENT_LIMIT:
            self._trim_to(len(self.recent) - RECENT_LIMIT)

    def _trim_to(self, start: int) -> None:
        """Forget ``recent[:start]`` (the chunk at ``start`` is now the newest complete one)."""
        if start <= 0:
            return
        del self.recent[:start]
        if self._pending is not None:
            self._pending.start = max(0, self._pending.start - start)


def _has_started(record: SessionRecord) -> bool:
    return (
        record.started_at is not None
        or record.state in ("running", "paused")
        or (record.state in TERMINAL_STATES and record.width is not None)
    )


def _same_start(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("width", "height", "fps", "format", "codec")
    return all(a.get(k) == b.get(k) for k in keys)


class Relay:
    """All session readers of this API process."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.sessions: dict[str, SessionRelay] = {}

    def attach(self, session_id: str, viewer: ViewerQueue) -> None:
        """Subscribe ``viewer`` to a session, starting its reader if this process has none.

        Synchronous on purpose: the registry lookup, the reader's exit (which unregisters it)
        and seeding never interleave.  The viewer is seeded at once if the reader is
        running, or by the reader as soon as its first look at the stream is done.
        """
        relay = self.sessions.get(session_id)
        if relay is None:
            relay = SessionRelay(self.broker, session_id, self._exited)
            self.sessions[session_id] = relay
            relay.task = asyncio.create_task(relay.run(), name=f"relay:{session_id}")
        relay.add(viewer)

    def detach(self, session_id: str, viewer: ViewerQueue) -> None:
        relay = self.sessions.get(session_id)
        if relay is not None:
            relay.remove(viewer)

    def _exited(self, relay: SessionRelay) -> None:
        if self.sessions.get(relay.session_id) is relay:
            del self.sessions[relay.session_id]

    def viewer_count(self) -> int:
        return sum(len(r.viewers) for r in self.sessions.values())

    async def aclose(self) -> None:
        """Stop every reader (server shutdown); viewers are closed with 1001 (going away)."""
        relays = list(self.sessions.values())
        for relay in relays:
            for viewer in [*relay.viewers, *relay.waiting]:
                viewer.abort(1001, "server shutting down")
            if relay.task is not None:
                relay.task.cancel()
        tasks = {relay.task for relay in relays if relay.task is not None}
        if not tasks:
            return
        # Bounded: a reader stuck in a broker call must not hang the server's shutdown.
        _, stuck = await asyncio.wait(tasks, timeout=CLOSE_S)
        for task in stuck:
            log.error("a relay reader did not stop within %.0f s of shutdown: %s", CLOSE_S, task.get_stack())


def _raise_if_cancelling() -> None:
    """Re-raise a cancellation that a broker client turned into a connection or timeout error,
    so that a cancelled reader stops instead of retrying."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
