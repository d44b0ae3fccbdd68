"""In-process stand-ins for Redis streams and blocking reads (used by `MemoryBroker`).

A `MemStream` keeps entries with Redis-style ids (``"<ms>-<seq>"``, strictly increasing) in
a deque trimmed to ``maxlen``, so cursors behave like Redis cursors: reading "after" an id
that was trimmed away simply starts at the oldest retained entry.  Blocking reads wait on a
`Notifier`; one waiter can wait on several notifiers at once (the multi-session relay read).
Everything here runs on one event loop and is not thread-safe by design: the broker is only
ever called from the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
StreamId = tuple[int, int]
ZERO_ID: StreamId = (0, 0)


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


def parse_id(text: str) -> StreamId:
    """Parse ``"ms-seq"`` / ``"ms"`` / ``"0"``; ``"$"`` must be resolved by the caller."""
    ms, _, seq = text.partition("-")
    try:
        return (int(ms), int(seq) if seq else 0)
    except ValueError:
        raise ValueError(f"invalid stream id {text!r}") from None


class IdGenerator:
    """Redis-style ids: wall-clock milliseconds plus a sequence within the millisecond,
    never going backwards even if the clock does."""

    def __init__(self) -> None:
        self.last: StreamId = ZERO_ID

    def next(self) -> StreamId:
        ms = int(time.time() * 1000)
        if ms > self.last[0]:
            self.last = (ms, 0)
        else:
            self.last = (self.last[0], self.last[1] + 1)
        return self.last


class Notifier:
    """Wakes every coroutine currently waiting on it (an edge-triggered broadcast)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()


async def wait_any(notifiers: Iterable[Notifier], timeout: float) -> None:
    """Wait until one of ``notifiers`` fires or ``timeout`` seconds pass (no error on timeout).

    Callers re-check their condition afterwards: a wake-up only means "something changed".
    """
    if timeout <= 0:
        return
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    targets = list(notifiers)
    for n in targets:
        n._waiters.add(fut)
    try:
        await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        pass
    finally:
        for n in targets:
            n._waiters.discard(fut)


class MemStream(Generic[T]):
    """An append-only stream of ``(id, value)`` capped at ``maxlen`` entries."""

    def __init__(self, maxlen: int | None = None) -> None:
        self.entries: deque[tuple[StreamId, T]] = deque()
        self.maxlen = maxlen
        self.ids = IdGenerator()
        self.notifier = Notifier()

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, value: T) -> str:
        sid = self.ids.next()
        self.entries.append((sid, value))
        if self.maxlen is not None:
            while len(self.entries) > self.maxlen:
                self.entries.popleft()
        self.notifier.notify()
        return format_id(sid)

    def last_id(self) -> StreamId:
        return self.entries[-1][0] if self.entries else ZERO_ID

    def resolve(self, cursor: str) -> StreamId:
        """``"$"`` -> the newest id now; anything else parsed."""
        return self.ids.last if cursor == "$" else parse_id(cursor)

    def after(self, cursor: StreamId, count: int) -> list[tuple[StreamId, T]]:
        """Up to ``count`` entries with id > ``cursor``, oldest first.

        Scans from the newest end because readers are normally close to it.
        """
        newer = 0
        for sid, _ in reversed(self.entries):
            if sid <= cursor:
                break
            newer += 1
        start = len(self.entries) - newer
        return list(itertools.islice(self.entries, start, start + count))
