"""The worker's liveness duties, every ``heartbeat_interval_s``:

* announce itself (`WorkerInfo`: capacity, held sessions, draining, preset, device) with a TTL of
  ``heartbeat_ttl_s`` — the front end's ``/readyz`` and other workers' reclaim logic read it;
* keep its jobs alive (`Broker.keepalive`); a job reported lost was taken over by another worker
  after this one was presumed dead, so that session is dropped here without any broker write;
* with free capacity and not draining, take over jobs of dead workers (`reclaim_abandoned`):
  a job is abandoned when its owner's heartbeat expired and it was not kept alive for one TTL;
* refresh the capacity / sessions / GPU memory gauges.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from server import metrics
from server.broker import TERMINAL_STATES, WorkerInfo
from server.tasks import settle
from server.worker.engine_thread import cuda_memory
from server.worker.stream import Outcome
from server.worker.waiting import wait_event

if TYPE_CHECKING:
    from server.worker.worker import Worker

log = logging.getLogger("rollcast.worker")


class Heartbeat:
    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.host = socket.gethostname()
        self.poke = asyncio.Event()
        self.sent = False
        self.stopped = False

    def info(self) -> WorkerInfo:
        w = self.w
        return WorkerInfo(
            id=w.worker_id,
            capacity=w.settings.max_sessions,
            active_sessions=sorted(w.streams),
            draining=w.draining,
            preset=w.gen.config.name if w.generator is not None else w.settings.preset,
            device=str(w.gen.device) if w.generator is not None else w.settings.device,
            host=self.host,
            started_at=w.started_at,
        )

    async def beat(self) -> None:
        """Send one heartbeat (and refresh gauges)."""
        w = self.w
        await w.broker.heartbeat(self.info(), w.settings.heartbeat_ttl_s)
        self.sent = True
        metrics.WORKER_CAPACITY.set(w.settings.max_sessions)
        metrics.WORKER_SESSIONS.set(len(w.streams))
        allocated, reserved = cuda_memory(w.generator)
        metrics.GPU_MEMORY.labels("allocated").set(allocated)
        metrics.GPU_MEMORY.labels("reserved").set(reserved)

    async def stop(self, task: asyncio.Task[None]) -> None:
        """Stop `run` (its task) after the beat in flight, if any, has been written: the worker
        removes its record next, and a beat landing after that would announce it again for a
        whole TTL. Cancels it after one interval + 5 s if it does not return."""
        self.stopped = True
        self.poke.set()
        if not await settle(task, self.w.settings.heartbeat_interval_s + 5.0):
            task.cancel()

    async def run(self) -> None:
        w = self.w
        while not w.closed:
            await wait_event(self.poke, w.settings.heartbeat_interval_s)
            self.poke.clear()
            if self.stopped:
                return
            try:
                await self.beat()
                await self._keepalive()
                if not w.draining and w.free_slots() > 0:
                    jobs = await w.broker.reclaim_abandoned(
                        w.worker_id, min_idle_s=w.settings.heartbeat_ttl_s, max_n=w.free_slots()
                    )
                    if jobs:
                        log.info(
                            "reclaimed %d abandoned job(s)",
                            len(jobs),
                            extra={
                                "event": "reclaimed",
                                "worker_id": w.worker_id,
                                "sessions": [j.session_id for j in jobs],
                            },
                        )
                        await w.admit(jobs)
            except Exception as exc:
                log.warning(
                    "heartbeat failed: %s", exc, extra={"event": "heartbeat_failed", "worker_id": w.worker_id}
                )

    async def _keepalive(self) -> None:
        w = self.w
        held = [s for s in w.streams.values() if s.finishing is None or s.finishing.kind != "lost"]
        if not held:
            return
        lost = {j.entry_id for j in await w.broker.keepalive(w.worker_id, [s.job for s in held])}
        for s in held:
            if s.job.entry_id not in lost or (
                s.finishing is not None and s.finishing.kind in ("end", "noticed")
            ):
                continue
            # Ending a session retires its job too: that is the front end's DELETE, not a takeover.
            record = await w.broker.get_session(s.id)
            if record is not None and record.state in TERMINAL_STATES:
                s.set_finishing(Outcome("noticed", record.end_reason or "deleted"))
            else:
                log.warning("job taken over by another worker", extra=s.log_extra("job_lost"))
                s.set_finishing(Outcome("lost", "taken_over"))
