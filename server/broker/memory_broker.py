"""In-process broker for the embedded single-process mode (`rollcast serve`, no Redis).

It mirrors `RedisBroker` rule for rule (the same contract tests run against both): the jobs
"stream" has undelivered entries, a pending list with owner / delivery time / delivery count,
a hand-back owner, and reclaiming by idle time + owner liveness; output and control streams
are capped `MemStream`s; TTLs are deadlines checked lazily.  All state lives on one event
loop and every method runs without yielding between its reads and writes, which is what
makes each operation atomic (the quota check and insert, claims, compare-and-set ends).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.broker.base import Broker, BrokerConfig
from server.broker.keys import HANDBACK_CONSUMER
from server.broker.memory_streams import (
    IdGenerator,
    MemStream,
    Notifier,
    format_id,
    parse_id,
    wait_any,
)
from server.broker.models import (
    TERMINAL_STATES,
    ControlEntry,
    Job,
    OutputEntry,
    QuotaExceeded,
    SessionExists,
    SessionNotFound,
    SessionRecord,
    WorkerInfo,
    validate_session_update,
)


@dataclass
class _Session:
    record: SessionRecord
    control: MemStream[dict[str, Any]]
    output: MemStream[OutputEntry]
    init: bytes | None = None
    snapshot: bytes | None = None
    expires_at: float | None = None  # time.monotonic() deadline once ended


@dataclass
class _Pending:
    owner: str
    delivered_at: float  # time.monotonic(); -inf for handed-back jobs
    deliveries: int


@dataclass
class _Jobs:
    ids: IdGenerator = field(default_factory=IdGenerator)
    entries: dict[str, str] = field(default_factory=dict)  # entry id -> session id
    undelivered: deque[str] = field(default_factory=deque)
    pending: dict[str, _Pending] = field(default_factory=dict)
    notifier: Notifier = field(default_factory=Notifier)


class MemoryBroker(Broker):
    """`Broker` kept in this process's memory.  Only for one process (API + worker)."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config or BrokerConfig()
        self._sessions: dict[str, _Session] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (deadline, session id)
        self._seq = 0
        self._queue_seq: dict[str, int] = {}
        self._queue_seqs: list[int] = []  # sorted, parallel to _queue_ids
        self._queue_ids: list[str] = []
        self._live: set[str] = set()
        self._by_key: dict[str, set[str]] = {}
        self._jobs = _Jobs()
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}

    # ------------------------------------------------------------------ internals

    def _purge(self) -> None:
        now = time.monotonic()
        while self._expiry and self._expiry[0][0] <= now:
            _, sid = heapq.heappop(self._expiry)
            s = self._sessions.get(sid)
            if s is not None and s.expires_at is not None and s.expires_at <= now:
                del self._sessions[sid]

    def _get(self, session_id: str) -> _Session | None:
        self._purge()
        return self._sessions.get(session_id)

    def _require(self, session_id: str) -> _Session:
        s = self._get(session_id)
        if s is None:
            raise SessionNotFound(session_id)
        return s

    def _dequeue(self, session_id: str) -> None:
        seq = self._queue_seq.pop(session_id, None)
        if seq is not None:
            i = bisect.bisect_left(self._queue_seqs, seq)
            del self._queue_seqs[i]
            del self._queue_ids[i]

    def _retire_job(self, entry_id: str) -> None:
        self._jobs.entries.pop(entry_id, None)
        self._jobs.pending.pop(entry_id, None)

    def _owner_alive(self, worker_id: str) -> bool:
        w = self._workers.get(worker_id)
        return w is not None and w[1] > time.monotonic()

    def _start(self, entry_id: str, worker_id: str, deliveries: int) -> Job | None:
        """A job was just delivered: dequeue / mark its session, or retire it if it ended."""
        session_id = self._jobs.entries.get(entry_id)
        s = self._get(session_id) if session_id is not None else None
        if session_id is None or s is None or s.record.state in TERMINAL_STATES:
            self._retire_job(entry_id)
            return None
        self._dequeue(session_id)
        update: dict[str, Any] = {"worker_id": worker_id}
        if s.record.state == "queued":
            update["state"] = "starting"
        s.record = s.record.model_copy(update=update)
        return Job(session_id, entry_id, worker_id, deliveries)

    # ------------------------------------------------------------------ sessions

    async def create_session(self, record: SessionRecord, quota: int | None = None) -> int:
        self._purge()
        if record.state != "queued":
            raise ValueError("a new session must be in state 'queued'")
        if quota is not None and record.api_key_id is None:
            raise ValueError("a quota needs an api_key_id")
        if record.id in self._sessions:
            raise SessionExists(record.id)
        if record.api_key_id is not None:
            owned = self._by_key.setdefault(record.api_key_id, set())
            if quota is not None and len(owned) >= quota:
                raise QuotaExceeded(record.api_key_id, quota)
            owned.add(record.id)
        entry = format_id(self._jobs.ids.next())
        self._jobs.entries[entry] = record.id
        self._jobs.undelivered.append(entry)
        self._sessions[record.id] = _Session(
            record=record.model_copy(update={"job_id": entry}),
            control=MemStream(self.config.control_maxlen),
            output=MemStream(self.config.output_maxlen),
        )
        self._live.add(record.id)
        self._seq += 1
        self._queue_seq[record.id] = self._seq
        self._queue_seqs.append(self._seq)
        self._queue_ids.append(record.id)
        self._jobs.notifier.notify()
        return len(self._queue_ids) - 1

    async def get_session(self, session_id: str) -> SessionRecord | None:
        s = self._get(session_id)
        return None if s is None else s.record

    async def update_session(self, session_id: str, **fields: Any) -> None:
        values = validate_session_update(fields)
        s = self._require(session_id)
        if s.record.state in TERMINAL_STATES:
            values.pop("state", None)  # a terminal state is final (see UPDATE_SESSION)
        s.record = s.record.model_copy(update=values)

    async def end_session(
        self,
        session_id: str,
        state: str = "ended",
        reason: str | None = None,
        error_code: str | None = None,
        *,
        expect: Sequence[str] | None = None,
    ) -> bool:
        if state not in TERMINAL_STATES:
            raise ValueError(f"end state must be one of {sorted(TERMINAL_STATES)}")
        s = self._require(session_id)
        current = s.record.state
        if current in TERMINAL_STATES or (expect is not None and current not in expect):
            return False
        s.record = s.record.model_copy(
            update={
                "state": state,
                "ended_at": time.time(),
                "end_reason": reason,
                "error_code": error_code,
            }
        )
        self._dequeue(session_id)
        self._live.discard(session_id)
        if s.record.api_key_id is not None:
            owned = self._by_key.get(s.record.api_key_id)
            if owned is not None:
                owned.discard(session_id)
                if not owned:
                    del self._by_key[s.record.api_key_id]
        if s.record.job_id is not None:
            self._retire_job(s.record.job_id)
        s.expires_at = time.monotonic() + max(0.001, self.config.session_ttl_s)
        heapq.heappush(self._expiry, (s.expires_at, session_id))
        return True

    async def queue_position(self, session_id: str) -> int | None:
        self._purge()
        seq = self._queue_seq.get(session_id)
        return None if seq is None else bisect.bisect_left(self._queue_seqs, seq)

    async def count_queued(self) -> int:
        return len(self._queue_ids)

    async def count_active(self) -> int:
        return len(self._live) - len(self._queue_ids)

    async def list_sessions(self, api_key_id: str | None = None) -> list[SessionRecord]:
        self._purge()
        ids = self._live if api_key_id is None else self._by_key.get(api_key_id, set())
        records = [self._sessions[i].record for i in ids if i in self._sessions]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # ------------------------------------------------------------------ jobs

    def _claim_now(self, worker_id: str, max_n: int) -> list[Job]:
        jobs: list[Job] = []
        now = time.monotonic()
        handed = sorted(
            (e for e, p in self._jobs.pending.items() if p.owner == HANDBACK_CONSUMER),
            key=parse_id,
        )
        for entry in handed[:max_n]:
            p = self._jobs.pending[entry]
            p.owner, p.delivered_at, p.deliveries = worker_id, now, p.deliveries + 1
            job = self._start(entry, worker_id, p.deliveries)
            if job is not None:
                jobs.append(job)
        while len(jobs) < max_n and self._jobs.undelivered:
            entry = self._jobs.undelivered.popleft()
            if entry not in self._jobs.entries:
                continue  # retired while undelivered (session cancelled)
            self._jobs.pending[entry] = _Pending(worker_id, now, 1)
            job = self._start(entry, worker_id, 1)
            if job is not None:
                jobs.append(job)
        return jobs

    async def claim_jobs(self, worker_id: str, max_n: int, block_s: float = 0.0) -> list[Job]:
        if max_n <= 0:
            return []
        deadline = time.monotonic() + block_s
        while True:
            jobs = self._claim_now(worker_id, max_n)
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0:
                return jobs
            await wait_any([self._jobs.notifier], remaining)

    def _owned(self, job: Job) -> _Pending | None:
        p = self._jobs.pending.get(job.entry_id)
        return p if p is not None and p.owner == job.worker_id else None

    async def ack_job(self, job: Job) -> bool:
        if self._owned(job) is None:
            return False
        self._retire_job(job.entry_id)
        return True

    async def hand_back(self, job: Job) -> bool:
        p = self._owned(job)
        if p is None:
            return False
        p.owner, p.delivered_at = HANDBACK_CONSUMER, -math.inf
        self._jobs.notifier.notify()
        return True

    async def reclaim_abandoned(self, worker_id: str, min_idle_s: float, max_n: int) -> list[Job]:
        now = time.monotonic()
        jobs: list[Job] = []
        for entry in sorted(self._jobs.pending, key=parse_id):
            if len(jobs) >= max_n:
                break
            p = self._jobs.pending[entry]
            if p.owner == worker_id or now - p.delivered_at < min_idle_s:
                continue
            if self._owner_alive(p.owner):
                continue
            p.owner, p.delivered_at, p.deliveries = worker_id, now, p.deliveries + 1
            job = self._start(entry, worker_id, p.deliveries)
            if job is not None:
                jobs.append(job)
        return jobs

    async def keepalive(self, worker_id: str, jobs: Sequence[Job]) -> list[Job]:
        lost: list[Job] = []
        now = time.monotonic()
        for job in jobs:
            p = self._jobs.pending.get(job.entry_id)
            if p is None or p.owner != worker_id:
                lost.append(job)
            else:
                p.delivered_at = now
        return lost

    # ------------------------------------------------------------------ control

    async def send_control(self, session_id: str, message: Mapping[str, Any]) -> str:
        if "type" not in message:
            raise ValueError("a control message needs a 'type'")
        s = self._require(session_id)
        # Round-trip through JSON so both brokers hand out equal, detached copies.
        return s.control.add(json.loads(json.dumps(dict(message))))

    async def read_control(
        self, session_id: str, after_id: str = "0", block_s: float = 0.0, count: int = 100
    ) -> list[ControlEntry]:
        s = self._get(session_id)
        if s is None:
            await asyncio.sleep(max(0.0, block_s))  # as XREAD on a missing stream
            return []
        stream = s.control
        cursor = stream.resolve(after_id)
        deadline = time.monotonic() + block_s
        while True:
            got = stream.after(cursor, count)
            remaining = deadline - time.monotonic()
            if got or remaining <= 0:
                return [ControlEntry(format_id(i), json.loads(json.dumps(m))) for i, m in got]
            await wait_any([stream.notifier], remaining)

    # ------------------------------------------------------------------ output

    async def publish_event(self, session_id: str, event: Mapping[str, Any]) -> str:
        if "type" not in event:
            raise ValueError("an event needs a 'type'")
        s = self._require(session_id)
        return s.output.add(OutputEntry("", "event", event=json.loads(json.dumps(dict(event)))))

    async def publish_media(self, session_id: str, data: bytes, meta: Mapping[str, Any] | None = None) -> str:
        s = self._require(session_id)
        clean_meta = json.loads(json.dumps(dict(meta or {})))
        return s.output.add(OutputEntry("", "media", data=bytes(data), meta=clean_meta))

    async def read_outputs(
        self, cursors: Mapping[str, str], block_s: float = 0.0, count: int = 100
    ) -> dict[str, list[OutputEntry]]:
        streams: dict[str, tuple[MemStream[OutputEntry], tuple[int, int]]] = {}
        for sid, cursor in cursors.items():
            s = self._get(sid)
            if s is not None:
                streams[sid] = (s.output, s.output.resolve(cursor))
        if not streams:
            # Like XREAD on streams that do not exist: nothing arrives, the wait still happens.
            await asyncio.sleep(max(0.0, block_s))
            return {}
        deadline = time.monotonic() + block_s
        while True:
            out: dict[str, list[OutputEntry]] = {}
            for sid, (stream, pos) in streams.items():
                got = stream.after(pos, count)
                if got:
                    out[sid] = [_with_id(e, i) for i, e in got]
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            await wait_any([st.notifier for st, _ in streams.values()], remaining)

    async def read_output_tail(self, session_id: str, count: int) -> list[OutputEntry]:
        s = self._get(session_id)
        if s is None or count <= 0:
            return []
        n = len(s.output.entries)
        return [_with_id(e, i) for i, e in itertools.islice(s.output.entries, max(0, n - count), n)]

    async def latest_output_id(self, session_id: str) -> str:
        s = self._get(session_id)
        return "0-0" if s is None else format_id(s.output.last_id())

    async def set_init_segment(self, session_id: str, data: bytes) -> None:
        self._require(session_id).init = bytes(data)

    async def get_init_segment(self, session_id: str) -> bytes | None:
        s = self._get(session_id)
        return None if s is None else s.init

    async def save_snapshot(self, session_id: str, data: bytes) -> None:
        self._require(session_id).snapshot = bytes(data)

    async def load_snapshot(self, session_id: str) -> bytes | None:
        s = self._get(session_id)
        return None if s is None else s.snapshot

    # ------------------------------------------------------------------ workers

    async def heartbeat(self, info: WorkerInfo, ttl_s: float) -> None:
        stamped = info.model_copy(update={"updated_at": time.time()})
        self._workers[info.id] = (stamped, time.monotonic() + ttl_s)

    async def remove_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def list_workers(self) -> list[WorkerInfo]:
        now = time.monotonic()
        for wid in [w for w, (_, exp) in self._workers.items() if exp <= now]:
            del self._workers[wid]
        return [info for _, (info, _) in sorted(self._workers.items())]

    # ------------------------------------------------------------------ lifecycle

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def _with_id(entry: OutputEntry, sid: tuple[int, int]) -> OutputEntry:
    """A reader's own copy of a stored entry, stamped with its id (as Redis would hand out)."""
    event = None if entry.event is None else json.loads(json.dumps(entry.event))
    meta = json.loads(json.dumps(entry.meta)) if entry.meta else {}
    return OutputEntry(format_id(sid), entry.kind, event, entry.data, meta)
