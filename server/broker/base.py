"""The broker interface: everything the front end and the workers exchange goes through it.

Two implementations behave identically (the same contract tests run against both):
`RedisBroker` for any number of API processes and workers on many machines, and
`MemoryBroker` for the embedded single-process mode (`rollcast serve`, no Redis).

Conventions shared by every method:

* All methods are coroutines and must be called on the event loop (the worker's engine thread
  hands its results to the loop; it never calls the broker itself).
* ``block_s``: ``0`` returns at once; ``> 0`` waits up to that many seconds for data and then
  returns an empty list.  (Unlike Redis' ``BLOCK 0`` it never means "forever".)
* Stream cursors are opaque strings.  ``"0"`` means "from the beginning of what is retained",
  ``"$"`` means "only entries added after this call starts"; otherwise pass the ``id`` of the
  last entry you have seen.  Ids from one implementation are meaningless to the other.
* Reads return ``None`` for a missing session; writes raise `SessionNotFound`.
* Sessions end exactly once, through `end_session`, which releases the queue slot, the quota
  slot and the job, and starts the TTL after which the session and all its streams vanish.

Relaying many sessions from one API process: `read_outputs` waits on several sessions' output
streams in one call (one ``XREAD`` on one connection for Redis), so a single hub task per
process can serve every viewer; one reader task per session calling `read_output` also works
but holds one Redis connection per blocked reader.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from server.broker.models import (
    ControlEntry,
    Job,
    OutputEntry,
    SessionRecord,
    WorkerInfo,
)


@dataclass(frozen=True)
class BrokerConfig:
    """Tunables shared by both implementations.

    ``output_maxlen`` caps each session's output stream (Redis trims approximately, so the
    length stays within about one stream node, ~100 entries, above the cap); a viewer that
    falls further behind than that skips the lost entries.  ``session_ttl_s`` is how long an
    ended session (record, streams, init segment, snapshot) stays readable.
    """

    prefix: str = "rollcast"
    output_maxlen: int = 512
    control_maxlen: int = 1000
    session_ttl_s: float = 3600.0


class Broker(abc.ABC):
    """Abstract broker; see the module docstring for shared conventions."""

    config: BrokerConfig

    # ------------------------------------------------------------------ sessions

    @abc.abstractmethod
    async def create_session(self, record: SessionRecord, quota: int | None = None) -> int:
        """Store a new ``queued`` session, enqueue its job; return its queue position (0 = next).

        ``quota`` limits the live (not ended) sessions of ``record.api_key_id``; the check and
        the insert are one atomic step, so concurrent creates never exceed it.  Raises
        `QuotaExceeded`, `SessionExists`, or ValueError (state not ``queued``, or a quota
        without an API key).
        """

    @abc.abstractmethod
    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session's record, or None if it never existed or has expired."""

    @abc.abstractmethod
    async def update_session(self, session_id: str, **fields: Any) -> None:
        """Set some fields of a session (not ``id``/``job_id``/``api_key_id``, not a terminal
        state).  Raises SessionNotFound or ValueError."""

    @abc.abstractmethod
    async def end_session(
        self,
        session_id: str,
        state: str = "ended",
        reason: str | None = None,
        error_code: str | None = None,
        *,
        expect: Sequence[str] | None = None,
    ) -> bool:
        """Atomically move a live session to ``state`` (``ended`` or ``failed``).

        Removes it from the queue, the live set and its key's quota set, retires its job
        (XACK + XDEL), sets ``ended_at`` and starts the TTL on all its keys.  With ``expect``
        it only acts if the current state is one of them (compare-and-set: the front end
        cancels a session with ``expect=["queued"]`` and, if that returns False, asks the
        worker to stop it instead).  Returns False if the session was already ended or not
        in ``expect``; raises SessionNotFound if it does not exist.
        """

    @abc.abstractmethod
    async def queue_position(self, session_id: str) -> int | None:
        """0-based position among queued sessions (0 starts next); None if not queued."""

    @abc.abstractmethod
    async def count_queued(self) -> int:
        """Number of sessions waiting in the queue."""

    @abc.abstractmethod
    async def count_active(self) -> int:
        """Number of live sessions that have left the queue (starting, running, paused)."""

    @abc.abstractmethod
    async def list_sessions(self, api_key_id: str | None = None) -> list[SessionRecord]:
        """Live sessions (all, or one API key's), oldest first."""

    # ------------------------------------------------------------------ jobs (workers)

    @abc.abstractmethod
    async def claim_jobs(self, worker_id: str, max_n: int, block_s: float = 0.0) -> list[Job]:
        """Take up to ``max_n`` jobs: first those handed back by draining workers, then new ones.

        A claimed queued session leaves the queue, gets state ``starting`` and
        ``worker_id``; a handed-back session keeps its state (the new worker resumes it from
        its snapshot).  Jobs of sessions that ended meanwhile are retired and skipped.
        Call it only with free capacity: claimed jobs belong to the worker until acked,
        handed back, or reclaimed after the worker died.
        """

    @abc.abstractmethod
    async def ack_job(self, job: Job) -> bool:
        """Retire a finished job.  False if ``job.worker_id`` no longer owns it."""

    @abc.abstractmethod
    async def hand_back(self, job: Job) -> bool:
        """Give a job back (drain) so the next `claim_jobs` of any worker gets it at once.

        Does not count as a delivery.  False if ``job.worker_id`` no longer owns it.
        """

    @abc.abstractmethod
    async def reclaim_abandoned(self, worker_id: str, min_idle_s: float, max_n: int) -> list[Job]:
        """Take over up to ``max_n`` jobs of dead workers.

        A job is abandoned when its owner's heartbeat has expired AND it was not kept alive
        for ``min_idle_s``; both must hold, so a live worker's long job is never stolen even
        if one keepalive is late.  Safe against concurrent reclaimers (each job goes to one).
        """

    @abc.abstractmethod
    async def keepalive(self, worker_id: str, jobs: Sequence[Job]) -> list[Job]:
        """Reset the idle time of the worker's jobs; return those it no longer owns
        (reclaimed by another worker after this one was presumed dead: stop them)."""

    # ------------------------------------------------------------------ control stream

    @abc.abstractmethod
    async def send_control(self, session_id: str, message: Mapping[str, Any]) -> str:
        """Append a control message (needs a ``"type"`` key); returns its stream id."""

    @abc.abstractmethod
    async def read_control(
        self, session_id: str, after_id: str = "0", block_s: float = 0.0, count: int = 100
    ) -> list[ControlEntry]:
        """Control messages after ``after_id``, oldest first."""

    # ------------------------------------------------------------------ output stream

    @abc.abstractmethod
    async def publish_event(self, session_id: str, event: Mapping[str, Any]) -> str:
        """Append a JSON event (needs a ``"type"`` key) to the output stream; returns its id."""

    @abc.abstractmethod
    async def publish_media(self, session_id: str, data: bytes, meta: Mapping[str, Any] | None = None) -> str:
        """Append an opaque media message plus small JSON metadata; returns its id."""

    @abc.abstractmethod
    async def read_outputs(
        self, cursors: Mapping[str, str], block_s: float = 0.0, count: int = 100
    ) -> dict[str, list[OutputEntry]]:
        """Read several sessions' output streams at once (session id -> cursor).

        Returns only sessions with new entries (at most ``count`` each); blocks until at
        least one of them has data or ``block_s`` passes.
        """

    async def read_output(
        self, session_id: str, after_id: str = "0", block_s: float = 0.0, count: int = 100
    ) -> list[OutputEntry]:
        """Output entries of one session after ``after_id``, oldest first."""
        got = await self.read_outputs({session_id: after_id}, block_s=block_s, count=count)
        return got.get(session_id, [])

    async def read_output_tail(self, session_id: str, count: int) -> list[OutputEntry]:
        """The newest ``count`` output entries, oldest first ([] for a missing session).

        A relay that starts watching a running session looks back this far for the start of
        the latest chunk instead of replaying the whole retained stream.  This generic version
        pages through the stream; both implementations override it with one cheap read.
        """
        tail: list[OutputEntry] = []
        cursor = "0"
        while True:
            got = await self.read_output(session_id, cursor, count=max(count, 100))
            if not got:
                return tail
            tail = (tail + got)[-count:] if count > 0 else []
            cursor = got[-1].id

    @abc.abstractmethod
    async def latest_output_id(self, session_id: str) -> str:
        """Id of the newest output entry (``"0-0"`` if none): a late joiner's start cursor."""

    @abc.abstractmethod
    async def set_init_segment(self, session_id: str, data: bytes) -> None:
        """Store the session's (latest) fMP4 init segment for late joiners."""

    @abc.abstractmethod
    async def get_init_segment(self, session_id: str) -> bytes | None:
        """The stored init segment, or None."""

    @abc.abstractmethod
    async def save_snapshot(self, session_id: str, data: bytes) -> None:
        """Store the latest engine snapshot (replaces the previous one) for failover."""

    @abc.abstractmethod
    async def load_snapshot(self, session_id: str) -> bytes | None:
        """The latest engine snapshot, or None."""

    # ------------------------------------------------------------------ workers

    @abc.abstractmethod
    async def heartbeat(self, info: WorkerInfo, ttl_s: float) -> None:
        """Announce ``info.id`` as alive for ``ttl_s`` seconds (refresh well before expiry)."""

    @abc.abstractmethod
    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker at once (clean shutdown)."""

    @abc.abstractmethod
    async def list_workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat has not expired, sorted by id."""

    async def ready_workers(self) -> int:
        """Number of live workers that are not draining."""
        return sum(1 for w in await self.list_workers() if not w.draining)

    # ------------------------------------------------------------------ lifecycle

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True if the backend answers (used by ``/readyz``)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; wakes no one, pending blocking reads may fail."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
