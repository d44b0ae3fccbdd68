"""Redis key layout of the broker (``{p}`` is the configurable prefix, default ``rollcast``).

Global keys

``{p}:jobs`` (stream)
    One entry ``{session_id: <id>}`` per session, added by `create_session`.  Read by the
    consumer group ``{p}:workers`` (created at id 0, so jobs added before the first worker
    started are not missed).  Workers ``XREADGROUP`` only when they have free capacity.
    Entries are ``XACK``-ed *and* ``XDEL``-eted when a session ends, so the stream length is
    the number of queued + running jobs (what an autoscaler such as KEDA should watch).

    * Hand-back on drain: the draining worker ``XCLAIM``s the entry to the reserved consumer
      ``__handback__`` with ``IDLE`` set ~30 years and ``JUSTID`` (no delivery counted).
      `claim_jobs` first looks up ``__handback__``'s pending entries (``XPENDING ... IDLE``)
      and ``XCLAIM``s them with a huge min-idle-time: the first claimer resets the idle time,
      so a concurrent claimer's ``XCLAIM`` skips the entry and each job goes to one worker.
      Handed-back jobs therefore come before new ones and keep their place in the stream.
    * Crashed workers: `reclaim_abandoned` lists pending entries idle for at least
      ``min_idle`` (``XPENDING ... IDLE``), keeps those whose owner has no live heartbeat key,
      and ``XCLAIM``s them with the same ``min_idle`` (again race-free between reclaimers).
      ``XAUTOCLAIM`` is not used because it cannot look at the owner.  Live workers call
      `keepalive` on every heartbeat, a script that ``XCLAIM ... 0 ... JUSTID``s each of
      their entries to themselves *only if they still own it* (resetting the idle time), and
      reports the ones they lost.  So a job is reclaimed only when its owner's heartbeat has
      expired and it has not been kept alive for ``min_idle``.
    * ``ack`` / ``hand_back`` / ``keepalive`` check ownership first (a script reading
      ``XPENDING`` for the id), so a worker that was presumed dead cannot retire or move a job
      that another worker has taken over.

``{p}:queue`` (sorted set)
    Queued session ids scored by ``INCR {p}:queue:seq`` (enqueue order), so
    `queue_position` is ``ZRANK`` (exact, O(log n)) and `count_queued` is ``ZCARD``.  A
    session leaves it when a worker claims it or when it ends (cancel).

``{p}:queue:seq`` (string counter)
    Enqueue sequence number; the only key that grows no structure and is never deleted.

``{p}:sessions`` (set)
    Ids of live (not ended) sessions; `count_active` = ``SCARD`` minus ``ZCARD {p}:queue``.

``{p}:key:{api_key_id}:sessions`` (set)
    Live sessions of one API key.  The quota check (``SCARD`` < quota) and the ``SADD`` run
    in the same Lua script as the rest of `create_session`, so concurrent creates from
    several API processes can never exceed the quota.  Empty sets vanish by themselves.

``{p}:worker:{worker_id}`` (string, TTL)
    The worker's `WorkerInfo` JSON, written with ``PX ttl`` on every heartbeat; its
    existence *is* liveness.

``{p}:workers`` (sorted set)
    Index of worker ids (score = last heartbeat, epoch seconds) so listing needs no
    ``SCAN``; ids whose ``{p}:worker:{id}`` key has expired are pruned when listed.

Per-session keys (all get the session TTL, default 1 h, when the session ends)

``{p}:session:{id}`` (hash)
    The `SessionRecord`; every field value is JSON (so ``None``/ints/dicts round-trip).
``{p}:session:{id}:control`` (stream, ``MAXLEN ~ 1000``)
    Front end -> worker control messages, entries ``{data: <json>}``.
``{p}:session:{id}:out`` (stream, ``MAXLEN ~ output_maxlen``, default 512)
    Worker -> front ends, entries ``{kind: "event", data: <json>}`` or
    ``{kind: "media", data: <bytes>, meta: <json>}``.
``{p}:session:{id}:init`` (string)
    Latest fMP4 init segment, sent first to late joiners.
``{p}:session:{id}:snapshot`` (string)
    Latest engine snapshot, for failover to another worker.

Writes to per-session keys go through scripts that refuse a missing session and copy the
session hash's remaining TTL onto the written key, so a write that races with the end of a
session cannot leave a key without expiry behind.  The layout assumes a single Redis (not
Redis Cluster: the scripts touch keys of different hash slots).
"""

from __future__ import annotations

from dataclasses import dataclass

HANDBACK_CONSUMER = "__handback__"


@dataclass(frozen=True)
class KeySpace:
    """Builds key names for one prefix."""

    prefix: str = "rollcast"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def group(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    @property
    def queue_seq(self) -> str:
        return f"{self.prefix}:queue:seq"

    @property
    def live(self) -> str:
        return f"{self.prefix}:sessions"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def key_sessions(self, api_key_id: str) -> str:
        return f"{self.prefix}:key:{api_key_id}:sessions"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    def control(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}:control"

    def output(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}:out"

    def init_segment(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}:init"

    def snapshot(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}:snapshot"

    def session_keys(self, session_id: str) -> list[str]:
        """Every key that belongs to one session (the hash first)."""
        return [
            self.session(session_id),
            self.control(session_id),
            self.output(session_id),
            self.init_segment(session_id),
            self.snapshot(session_id),
        ]
