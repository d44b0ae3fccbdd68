"""Per-viewer bounded send queue: the relay never waits for a viewer.

The session relay *offers* each message to every viewer's queue without awaiting; each
viewer's own sender task drains its queue into its WebSocket.  When a queue is full the
viewer is behind, and whole chunks are dropped, oldest first:

* The unit dropped is a whole chunk: its ``chunk`` event and its media (fMP4: one
  fragment; JPEG: all its frames).  A chunk that has begun to be sent (its event or a frame
  is out) is never cut short — the next chunk is dropped instead — and once a chunk is
  dropped, its messages that arrive later are dropped too.  So a viewer never sees part of
  a chunk, nor a ``chunk`` event without its media; it sees the chunk index jump.
  (Dropping the events with the media, rather than keeping them, is what keeps the queue
  bounded: a viewer that is always behind would otherwise queue one event per chunk.)
* The init segment and all other events (``started``, ``prompt_applied``, ``paused``,
  ``error``, ``ended``, ...) are never dropped.  A queue holding twice its limit of such
  undroppable messages closes the viewer (1013).
* Dropped frames are counted in ``rollcast_frames_dropped_total{reason="slow_viewer"}``.
  Every fragment starts with a keyframe, so the next one decodes after init + a gap.
* A viewer is *behind* from the moment its queue is full until it drains to half the
  limit; one that stays behind for ``slow_viewer_timeout_s`` is closed with 1013.

Memory per viewer is therefore bounded by ``limit`` media messages (plus a few events).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from server.metrics import FRAMES_DROPPED

CLOSE_SLOW_VIEWER = 1013


@dataclass(slots=True)
class Outgoing:
    """One message for viewers: JSON text (an event) or a framed binary media message.

    ``chunk >= 0`` marks the droppable parts of a chunk: its media (``media``, with
    ``frames`` from the header) and its ``chunk`` event.  The init segment and other events
    have ``chunk == -1``.  ``epoch`` counts the stream's `started` events, so that a session
    restarted from frame 0 (chunk indices begin again) never mixes up two chunks.
    """

    payload: str | bytes
    media: bool = False
    chunk: int = -1
    frames: int = 0
    published_at: float | None = None  # worker's publish time (epoch s), for relay latency
    epoch: int = 0

    @property
    def droppable(self) -> bool:
        return self.chunk >= 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.epoch, self.chunk)


class ViewerQueue:
    """A bounded FIFO of `Outgoing` with the chunk-dropping policy described above."""

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(2, limit)
        self._items: deque[Outgoing] = deque()
        self._clock = clock
        self._wake = asyncio.Event()
        self._dropped: set[tuple[int, int]] = set()  # recently dropped chunks: late parts go too
        self._sent_chunk = (-1, -1)  # (epoch, chunk) of the last chunk part handed to the sender
        self.behind_since: float | None = None
        self.dropped_frames = 0
        self.dropped_chunks = 0
        self.max_depth = 0
        self.close_code: int | None = None  # set: close after what is queued has been sent
        self.close_reason = ""
        self.aborted = False  # closed at once, queue discarded

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    # -- producer side (the relay; never awaits) ----------------------------------------------
    def offer(self, item: Outgoing) -> None:
        if self.closed:
            return
        if item.droppable and item.key in self._dropped:
            self._count_drop(item.frames, chunks=0)
            return
        if len(self._items) >= self.limit:
            if self.behind_since is None:
                self.behind_since = self._clock()
            self._drop_oldest_chunk()
            if item.droppable and item.key in self._dropped:  # its own chunk just went
                self._count_drop(item.frames, chunks=0)
                return
        if len(self._items) >= self.limit:
            if item.droppable and item.key != self._sent_chunk:  # nothing else to drop
                self._mark_dropped(item.key)
                self._count_drop(item.frames, chunks=1)
                return
            if len(self._items) >= 2 * self.limit:
                self.abort(CLOSE_SLOW_VIEWER, "viewer too slow")
                return
        self._items.append(item)
        self.max_depth = max(self.max_depth, len(self._items))
        self._wake.set()

    def finish(self, code: int, reason: str = "") -> None:
        """Close after the queued messages are sent (e.g. 1000 after `ended`)."""
        if not self.closed:
            self.close_code, self.close_reason = code, reason
            self._wake.set()

    def abort(self, code: int, reason: str = "") -> None:
        """Close now; queued messages are discarded."""
        if not self.closed or not self.aborted:
            self.close_code, self.close_reason, self.aborted = code, reason, True
            self._items.clear()
            self._wake.set()

    def overdue(self, timeout_s: float) -> bool:
        """Behind for longer than ``timeout_s``."""
        return self.behind_since is not None and self._clock() - self.behind_since > timeout_s

    # -- consumer side (the viewer's sender task) ---------------------------------------------
    async def next(self) -> Outgoing | None:
        """The next message to send, or None when the viewer is to be closed."""
        while True:
            if self.aborted:
                return None
            if self._items:
                item = self._items.popleft()
                if item.droppable:
                    self._sent_chunk = item.key
                if len(self._items) <= self.limit // 2:
                    self.behind_since = None
                return item
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()

    # -- internals ----------------------------------------------------------------------------
    def _drop_oldest_chunk(self) -> None:
        # A chunk already partly sent must be completed, not cut: drop the next one instead.
        victims = sorted({i.key for i in self._items if i.droppable and i.key != self._sent_chunk})
        if not victims:
            return
        victim = victims[0]
        frames = sum(i.frames for i in self._items if i.droppable and i.key == victim)
        self._items = deque(i for i in self._items if not (i.droppable and i.key == victim))
        self._mark_dropped(victim)
        self._count_drop(frames, chunks=1)

    def _mark_dropped(self, key: tuple[int, int]) -> None:
        """Parts of chunk ``key`` still to come (its media, more JPEG frames) go on arrival."""
        self._dropped.add(key)
        if len(self._dropped) > 16:  # chunks arrive in order: only the newest can still grow
            self._dropped.discard(min(self._dropped))

    def _count_drop(self, frames: int, chunks: int) -> None:
        self.dropped_frames += frames
        self.dropped_chunks += chunks
        if frames:
            FRAMES_DROPPED.labels(reason="slow_viewer").inc(frames)
