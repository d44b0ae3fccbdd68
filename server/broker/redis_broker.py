"""Broker on Redis Streams, for several API processes and workers on many machines.

The key layout and the job life cycle (claim, keepalive, hand-back, reclaim) are documented
in `server.broker.keys`; the atomic multi-key steps are the Lua scripts of
`server.broker.redis_scripts`.  Uses `redis.asyncio` only, so nothing blocks the event loop.

Blocking reads are split into slices shorter than the client's socket timeout (a long
``XREAD BLOCK`` would otherwise look like a dead connection); `claim_jobs` uses slices of at
most half a second and looks for handed-back jobs before each, so a job handed back while
a worker waits is picked up within half a second (new jobs wake it at once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from server.broker import redis_scripts as lua
from server.broker.base import Broker, BrokerConfig
from server.broker.keys import KeySpace
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
from server.broker.redis_codec import block_slices, json_pairs, output_entry, text, xread_entries
from server.broker.redis_jobs import RedisJobQueue


class RedisBroker(Broker):
    """`Broker` backed by Redis (>= 6.2; tested on 7)."""

    def __init__(
        self,
        client: aioredis.Redis,
        config: BrokerConfig | None = None,
        socket_timeout_s: float = 10.0,
    ) -> None:
        self.config = config or BrokerConfig()
        self.keys = KeySpace(self.config.prefix)
        self._r = client
        self._slice_s = max(0.05, socket_timeout_s / 2)
        self._jobs = RedisJobQueue(client, self.keys, self._slice_s)
        reg = client.register_script
        self._create = reg(lua.CREATE_SESSION)
        self._end = reg(lua.END_SESSION)
        self._update = reg(lua.UPDATE_SESSION)
        self._xadd = reg(lua.SESSION_XADD)
        self._set = reg(lua.SESSION_SET)

    @classmethod
    def from_url(
        cls, url: str, config: BrokerConfig | None = None, socket_timeout_s: float = 10.0
    ) -> RedisBroker:
        client = aioredis.Redis.from_url(
            url,
            protocol=2,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,  # a connect never waits forever either
            decode_responses=False,
        )
        return cls(client, config, socket_timeout_s)

    # ------------------------------------------------------------------ internals

    async def _session_script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except ResponseError as e:
            if "ROLLCAST_NOSESSION" in str(e):
                raise SessionNotFound(keys[0].rsplit(":", 1)[-1]) from None
            raise

    # ------------------------------------------------------------------ sessions

    async def create_session(self, record: SessionRecord, quota: int | None = None) -> int:
        if record.state != "queued":
            raise ValueError("a new session must be in state 'queued'")
        if quota is not None and record.api_key_id is None:
            raise ValueError("a quota needs an api_key_id")
        await self._jobs.ensure_group()
        k = self.keys
        has_key = record.api_key_id is not None
        fields = record.model_dump(mode="json", exclude={"job_id"})
        try:
            pos = await self._create(
                keys=[
                    k.session(record.id),
                    k.queue,
                    k.queue_seq,
                    k.live,
                    k.jobs,
                    k.key_sessions(record.api_key_id)
                    if record.api_key_id is not None
                    else k.session(record.id),
                ],
                args=[
                    record.id,
                    -1 if quota is None else quota,
                    "1" if has_key else "0",
                    *json_pairs(fields),
                ],
            )
        except ResponseError as e:
            if "ROLLCAST_QUOTA" in str(e):
                raise QuotaExceeded(record.api_key_id or "", quota or 0) from None
            if "ROLLCAST_EXISTS" in str(e):
                raise SessionExists(record.id) from None
            raise
        return int(pos)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        raw = await self._r.hgetall(self.keys.session(session_id))
        if not raw:
            return None
        return SessionRecord.model_validate({text(f): json.loads(v) for f, v in raw.items()})

    async def update_session(self, session_id: str, **fields: Any) -> None:
        values = validate_session_update(fields)
        if not values:
            if not await self._r.exists(self.keys.session(session_id)):
                raise SessionNotFound(session_id)
            return
        await self._session_script(self._update, [self.keys.session(session_id)], json_pairs(values))

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
        await self._jobs.ensure_group()
        k = self.keys
        # api_key_id and job_id never change after creation, so reading them first is safe
        # and lets the script declare every key it touches.
        key_raw, job_raw = await self._r.hmget(k.session(session_id), ["api_key_id", "job_id"])
        api_key = json.loads(key_raw) if key_raw is not None else None
        job_id = json.loads(job_raw) if job_raw is not None else None
        fields = {
            "state": state,
            "ended_at": time.time(),
            "end_reason": reason,
            "error_code": error_code,
        }
        ttl_ms = max(1, int(self.config.session_ttl_s * 1000))
        keys = [
            k.session(session_id),
            k.queue,
            k.live,
            k.jobs,
            k.key_sessions(api_key) if api_key is not None else k.session(session_id),
            *k.session_keys(session_id)[1:],
        ]
        args = [
            session_id,
            k.group,
            job_id or "",
            ttl_ms,
            "1" if api_key is not None else "0",
            json.dumps(list(expect)) if expect is not None else "",
            *json_pairs(fields),
        ]
        done = await self._session_script(self._end, keys, args)
        return bool(done)

    async def queue_position(self, session_id: str) -> int | None:
        rank: Any = await self._r.zrank(self.keys.queue, session_id)
        return None if rank is None else int(rank)

    async def count_queued(self) -> int:
        return int(await self._r.zcard(self.keys.queue))

    async def count_active(self) -> int:
        async with self._r.pipeline(transaction=True) as p:
            p.scard(self.keys.live)
            p.zcard(self.keys.queue)
            live, queued = await p.execute()
        return int(live) - int(queued)

    async def list_sessions(self, api_key_id: str | None = None) -> list[SessionRecord]:
        index = self.keys.live if api_key_id is None else self.keys.key_sessions(api_key_id)
        ids = [text(i) for i in await self._r.smembers(index)]
        async with self._r.pipeline(transaction=False) as p:
            for sid in ids:
                p.hgetall(self.keys.session(sid))
            raws = await p.execute()
        records = [
            SessionRecord.model_validate({text(f): json.loads(v) for f, v in raw.items()})
            for raw in raws
            if raw
        ]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # ------------------------------------------------------------------ jobs

    async def claim_jobs(self, worker_id: str, max_n: int, block_s: float = 0.0) -> list[Job]:
        return await self._jobs.claim(worker_id, max_n, block_s)

    async def ack_job(self, job: Job) -> bool:
        return await self._jobs.ack(job)

    async def hand_back(self, job: Job) -> bool:
        return await self._jobs.hand_back(job)

    async def reclaim_abandoned(self, worker_id: str, min_idle_s: float, max_n: int) -> list[Job]:
        return await self._jobs.reclaim(worker_id, min_idle_s, max_n)

    async def keepalive(self, worker_id: str, jobs: Sequence[Job]) -> list[Job]:
        return await self._jobs.keepalive(worker_id, jobs)

    # ------------------------------------------------------------------ control

    async def send_control(self, session_id: str, message: Mapping[str, Any]) -> str:
        if "type" not in message:
            raise ValueError("a control message needs a 'type'")
        keys = [self.keys.session(session_id), self.keys.control(session_id)]
        args = [self.config.control_maxlen, "data", json.dumps(dict(message))]
        return text(await self._session_script(self._xadd, keys, args))

    async def _xread(
        self, cursors: Mapping[str, str], block_s: float, count: int
    ) -> list[tuple[str, list[tuple[str, dict[bytes, bytes]]]]]:
        streams: dict[Any, Any] = dict(cursors)
        dollar = [key for key, c in streams.items() if c == "$"]
        if dollar:  # pin "$" once, so that every slice of a long wait means the same point
            async with self._r.pipeline(transaction=False) as p:
                for key in dollar:
                    p.xrevrange(key, "+", "-", count=1)
                for key, last in zip(dollar, await p.execute(), strict=True):
                    streams[key] = text(last[0][0]) if last else "0-0"
        async for block_ms in block_slices(block_s, self._slice_s):
            got = xread_entries(await self._r.xread(streams, count=count, block=block_ms))
            if got:
                return got
        return []

    async def read_control(
        self, session_id: str, after_id: str = "0", block_s: float = 0.0, count: int = 100
    ) -> list[ControlEntry]:
        got = await self._xread({self.keys.control(session_id): after_id}, block_s, count)
        return [ControlEntry(i, json.loads(f[b"data"])) for _, entries in got for i, f in entries]

    # ------------------------------------------------------------------ output

    async def _publish(self, session_id: str, fields: list[Any]) -> str:
        keys = [self.keys.session(session_id), self.keys.output(session_id)]
        args = [self.config.output_maxlen, *fields]
        return text(await self._session_script(self._xadd, keys, args))

    async def publish_event(self, session_id: str, event: Mapping[str, Any]) -> str:
        if "type" not in event:
            raise ValueError("an event needs a 'type'")
        return await self._publish(session_id, ["kind", "event", "data", json.dumps(dict(event))])

    async def publish_media(self, session_id: str, data: bytes, meta: Mapping[str, Any] | None = None) -> str:
        fields = ["kind", "media", "data", bytes(data), "meta", json.dumps(dict(meta or {}))]
        return await self._publish(session_id, fields)

    async def read_outputs(
        self, cursors: Mapping[str, str], block_s: float = 0.0, count: int = 100
    ) -> dict[str, list[OutputEntry]]:
        by_key = {self.keys.output(sid): sid for sid in cursors}
        got = await self._xread({self.keys.output(sid): c for sid, c in cursors.items()}, block_s, count)
        return {by_key[key]: [output_entry(i, f) for i, f in entries] for key, entries in got}

    async def read_output_tail(self, session_id: str, count: int) -> list[OutputEntry]:
        if count <= 0:
            return []
        got: Any = await self._r.xrevrange(self.keys.output(session_id), "+", "-", count=count)
        return [output_entry(text(i), f) for i, f in reversed(got)]

    async def latest_output_id(self, session_id: str) -> str:
        last: Any = await self._r.xrevrange(self.keys.output(session_id), "+", "-", count=1)
        return text(last[0][0]) if last else "0-0"

    async def set_init_segment(self, session_id: str, data: bytes) -> None:
        keys = [self.keys.session(session_id), self.keys.init_segment(session_id)]
        await self._session_script(self._set, keys, [bytes(data)])

    async def get_init_segment(self, session_id: str) -> bytes | None:
        blob: Any = await self._r.get(self.keys.init_segment(session_id))
        return blob

    async def save_snapshot(self, session_id: str, data: bytes) -> None:
        keys = [self.keys.session(session_id), self.keys.snapshot(session_id)]
        await self._session_script(self._set, keys, [bytes(data)])

    async def load_snapshot(self, session_id: str) -> bytes | None:
        blob: Any = await self._r.get(self.keys.snapshot(session_id))
        return blob

    # ------------------------------------------------------------------ workers

    async def heartbeat(self, info: WorkerInfo, ttl_s: float) -> None:
        now = time.time()
        payload = info.model_copy(update={"updated_at": now}).model_dump_json()
        async with self._r.pipeline(transaction=True) as p:
            p.set(self.keys.worker(info.id), payload, px=max(1, int(ttl_s * 1000)))
            p.zadd(self.keys.workers, {info.id: now})
            await p.execute()

    async def remove_worker(self, worker_id: str) -> None:
        async with self._r.pipeline(transaction=True) as p:
            p.delete(self.keys.worker(worker_id))
            p.zrem(self.keys.workers, worker_id)
            await p.execute()

    async def list_workers(self) -> list[WorkerInfo]:
        members: Any = await self._r.zrange(self.keys.workers, 0, -1)
        ids = sorted(text(i) for i in members)
        if not ids:
            return []
        raws: Any = await self._r.mget([self.keys.worker(i) for i in ids])
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:
            await self._r.zrem(self.keys.workers, *gone)
        return [WorkerInfo.model_validate_json(raw) for raw in raws if raw is not None]

    # ------------------------------------------------------------------ lifecycle

    async def ping(self) -> bool:
        try:
            return bool(await self._r.ping())
        except (OSError, RedisError):
            return False

    async def close(self) -> None:
        await self._r.aclose()
