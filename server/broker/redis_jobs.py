"""The jobs half of the Redis broker: claiming, acking, handing back and reclaiming jobs.

See `server.broker.keys` for the life cycle of an entry of ``{p}:jobs`` and why reclaiming
uses ``XPENDING`` + owner heartbeat + ``XCLAIM`` instead of ``XAUTOCLAIM``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from server.broker import redis_scripts as lua
from server.broker.keys import HANDBACK_CONSUMER, KeySpace
from server.broker.models import Job
from server.broker.redis_codec import block_slices, text, xread_entries

_CLAIM_SLICE_S = 0.5  # a waiting claimer looks for handed-back jobs this often
_RECLAIM_PAGE = 100
T = TypeVar("T")


class RedisJobQueue:
    """Jobs stream + consumer group operations (used by `RedisBroker`)."""

    def __init__(self, client: aioredis.Redis, keys: KeySpace, slice_s: float) -> None:
        self._r = client
        self.keys = keys
        self._slice_s = slice_s
        self._group_ready = False
        self._start = client.register_script(lua.START_JOB)
        self._owned = client.register_script(lua.OWNED_JOBS)

    async def ensure_group(self, force: bool = False) -> None:
        """Create the consumer group once per process (and again with ``force``)."""
        if self._group_ready and not force:
            return
        try:
            # From id 0: jobs enqueued before any worker existed are still delivered.
            await self._r.xgroup_create(self.keys.jobs, self.keys.group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    async def _grouped(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``; if the jobs stream lost its group (deleted key, flushed db), recreate
        the group and run it once more instead of failing every call from now on."""
        await self.ensure_group()
        try:
            return await op()
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            await self.ensure_group(force=True)
            return await op()

    async def _retire(self, entry_id: str) -> None:
        async with self._r.pipeline(transaction=True) as p:
            p.xack(self.keys.jobs, self.keys.group, entry_id)
            p.xdel(self.keys.jobs, entry_id)
            await p.execute()

    async def _start_jobs(
        self, worker_id: str, delivered: Sequence[tuple[str, dict[bytes, bytes], int]]
    ) -> list[Job]:
        jobs: list[Job] = []
        for entry_id, fields, deliveries in delivered:
            session_id = text(fields.get(b"session_id", b""))
            prev = None
            if session_id:
                prev = await self._start(
                    keys=[self.keys.session(session_id), self.keys.queue],
                    args=[session_id, json.dumps(worker_id)],
                )
            if prev is None:
                await self._retire(entry_id)  # session ended (or vanished) meanwhile
            else:
                jobs.append(Job(session_id, entry_id, worker_id, deliveries))
        return jobs

    async def _claim_handed_back(self, worker_id: str, max_n: int) -> list[Job]:
        k = self.keys
        pend: Any = await self._r.xpending_range(
            k.jobs, k.group, "-", "+", max_n, HANDBACK_CONSUMER, lua.HANDBACK_MIN_IDLE_MS
        )
        if not pend:
            return []
        counts = {text(p["message_id"]): int(p["times_delivered"]) for p in pend}
        claimed: Any = await self._r.xclaim(
            k.jobs, k.group, worker_id, lua.HANDBACK_MIN_IDLE_MS, list(counts)
        )
        delivered = [(text(i), f, counts[text(i)] + 1) for i, f in claimed if i is not None]
        return await self._start_jobs(worker_id, delivered)

    async def claim(self, worker_id: str, max_n: int, block_s: float = 0.0) -> list[Job]:
        if max_n <= 0:
            return []
        return await self._grouped(lambda: self._claim(worker_id, max_n, block_s))

    async def _claim(self, worker_id: str, max_n: int, block_s: float) -> list[Job]:
        k = self.keys
        async for block_ms in block_slices(block_s, min(_CLAIM_SLICE_S, self._slice_s)):
            jobs = await self._claim_handed_back(worker_id, max_n)
            want = max_n - len(jobs)
            if want > 0:
                resp = await self._r.xreadgroup(
                    k.group,
                    worker_id,
                    {k.jobs: ">"},
                    count=want,
                    block=None if jobs else block_ms,
                )
                for _, entries in xread_entries(resp):
                    jobs += await self._start_jobs(worker_id, [(i, f, 1) for i, f in entries])
            if jobs:
                return jobs
        return []

    async def _owned_op(self, op: str, worker_id: str, entry_ids: Sequence[str]) -> list[bool]:
        if not entry_ids:
            return []
        args: list[str | int] = [
            self.keys.group,
            worker_id,
            op,
            HANDBACK_CONSUMER,
            lua.HANDBACK_IDLE_MS,
            *entry_ids,
        ]
        res = await self._grouped(lambda: self._owned(keys=[self.keys.jobs], args=args))
        return [bool(int(x)) for x in res]

    async def ack(self, job: Job) -> bool:
        return (await self._owned_op("ack", job.worker_id, [job.entry_id]))[0]

    async def hand_back(self, job: Job) -> bool:
        return (await self._owned_op("handback", job.worker_id, [job.entry_id]))[0]

    async def keepalive(self, worker_id: str, jobs: Sequence[Job]) -> list[Job]:
        kept = await self._owned_op("keepalive", worker_id, [j.entry_id for j in jobs])
        return [j for j, ok in zip(jobs, kept, strict=True) if not ok]

    async def reclaim(self, worker_id: str, min_idle_s: float, max_n: int) -> list[Job]:
        if max_n <= 0:
            return []
        return await self._grouped(lambda: self._reclaim(worker_id, min_idle_s, max_n))

    async def _reclaim(self, worker_id: str, min_idle_s: float, max_n: int) -> list[Job]:
        k = self.keys
        min_ms = max(0, int(min_idle_s * 1000))
        candidates: dict[str, int] = {}  # entry id -> deliveries so far
        start = "-"
        while len(candidates) < max_n:
            pend: Any = await self._r.xpending_range(k.jobs, k.group, start, "+", _RECLAIM_PAGE, idle=min_ms)
            if not pend:
                break
            owners = sorted({text(p["consumer"]) for p in pend} - {worker_id})
            async with self._r.pipeline(transaction=False) as pipe:
                for owner in owners:
                    pipe.exists(k.worker(owner))
                alive = {o for o, n in zip(owners, await pipe.execute(), strict=True) if n}
            for p in pend:
                owner = text(p["consumer"])
                if owner != worker_id and owner not in alive and len(candidates) < max_n:
                    candidates[text(p["message_id"])] = int(p["times_delivered"])
            if len(pend) < _RECLAIM_PAGE:
                break
            start = "(" + text(pend[-1]["message_id"])
        if not candidates:
            return []
        # XCLAIM re-checks min idle: of several racing reclaimers only the first gets a job.
        claimed: Any = await self._r.xclaim(k.jobs, k.group, worker_id, min_ms, list(candidates))
        delivered = [(text(i), f, candidates[text(i)] + 1) for i, f in claimed if i is not None]
        return await self._start_jobs(worker_id, delivered)
