"""`Worker`: pulls sessions from the broker, generates them in batches, streams them out.

Tasks of a running worker (all on one event loop):

* admission — claims jobs while it has free slots (``max_sessions``) and turns each into a
  `SessionStream` (admission.py: fresh start, resume from snapshot, or restart);
* step loop — one batched `step_many` per iteration on the engine thread (step_loop.py);
* one publisher per session — encodes in the encode pool and publishes in order (stream.py);
* heartbeat — liveness, job keepalive, reclaiming dead workers' jobs (heartbeat.py).

Shutdown has three flavours:

* `request_drain()` (SIGTERM): stop claiming, announce ``draining``; sessions with a bounded
  remaining length that should finish within ``drain_timeout_s`` are finished, the others are
  snapshotted and handed back (another worker resumes them; viewers see no end); then the
  heartbeat is removed and `run()` returns.
* `stop()`: the same, but everything is handed back at once (tests, second Ctrl-C).
* cancelling the `run()` task: behaves like a crash as far as the broker is concerned (nothing
  is handed back, the heartbeat just expires and other workers reclaim the jobs); only local
  threads and tasks are cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from engine.generator import Generator
from server import metrics
from server.broker import Broker, Job
from server.settings import Settings
from server.worker.admission import fail_unstarted, open_stream
from server.worker.engine_thread import EngineThread
from server.worker.heartbeat import Heartbeat
from server.worker.step_loop import StepLoop, take_snapshot
from server.worker.stream import Outcome, SessionStream
from server.worker.waiting import wait_event

log = logging.getLogger("rollcast.worker")

CLAIM_BLOCK_S = 0.5  # how long one claim waits for a job (bounds the reaction to a drain)
DRAIN_GRACE_S = 30.0  # after the drain deadline, how long hand-backs may take before giving up


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        *,
        generator: Generator | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.generator = generator
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        self.streams: dict[str, SessionStream] = {}
        self.started_at = time.time()
        self.frames_per_second: float | None = None  # per session, measured by the step loop
        self.engine = EngineThread(settings.engine_threads)
        self.encode_pool = ThreadPoolExecutor(
            max_workers=max(1, min(4, settings.max_sessions)), thread_name_prefix="rollcast-encode"
        )
        self.wake = asyncio.Event()  # a publisher made room / a session arrived: step again
        self.heartbeat = Heartbeat(self)
        self._draining = False
        self._stopping = False
        self.closed = False  # run() is over: loops exit even if a cancellation got lost
        self._starting = 0
        self._drain_event = asyncio.Event()
        self._changed = asyncio.Event()  # a session arrived or left
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None

    # -- public API ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Heartbeat sent, model loaded, not draining."""
        return self.heartbeat.sent and self.generator is not None and not self._draining

    @property
    def draining(self) -> bool:
        return self._draining

    def request_drain(self) -> None:
        """Stop taking sessions; finish or hand back what is held; `run()` then returns.

        Safe to call from a signal handler or another thread.
        """
        self._draining = True
        self._signal(self._drain_event)

    async def stop(self) -> None:
        """Hand back every held session at once, clean up, and wait for `run()` to return."""
        self._stopping = True
        self.request_drain()
        if self._done is not None:
            await self._done.wait()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.generator is None:
                s = self.settings
                log.info(
                    "loading preset %s on %s",
                    s.preset,
                    s.device,
                    extra={"event": "loading", "worker_id": self.worker_id},
                )
                self.generator = await self.engine.load(
                    s.preset, device=s.device, weights=s.weights, sparsity=s.sparsity
                )
            await self.heartbeat.beat()
            log.info(
                "worker ready: capacity %d",
                self.settings.max_sessions,
                extra={"event": "ready", "worker_id": self.worker_id, "preset": self.gen.config.name},
            )
            tasks = [
                asyncio.create_task(self.heartbeat.run(), name="heartbeat"),
                asyncio.create_task(self._admission(), name="admission"),
                asyncio.create_task(StepLoop(self).run(), name="step-loop"),
            ]
            waiter = asyncio.create_task(self._drain_event.wait())
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for t in done:
                if t is not waiter and not t.cancelled() and t.exception() is not None:
                    log.error(
                        "worker task %s crashed",
                        t.get_name(),
                        exc_info=t.exception(),
                        extra={"event": "crashed", "worker_id": self.worker_id},
                    )
            self._draining = True
            await self._drain(tasks)
            await self.heartbeat.stop(next(t for t in tasks if t.get_name() == "heartbeat"))
            await self.broker.remove_worker(self.worker_id)
            log.info("worker stopped", extra={"event": "stopped", "worker_id": self.worker_id})
        finally:
            self.closed = True
            for t in tasks:
                t.cancel()
            for stream in list(self.streams.values()):
                stream.cancel_publisher()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=5.0)
                if pending:
                    log.error(
                        "tasks did not stop: %s",
                        [t.get_name() for t in pending],
                        extra={"event": "shutdown_stuck", "worker_id": self.worker_id},
                    )
            self.engine.shutdown(wait=False)
            self.encode_pool.shutdown(wait=False, cancel_futures=True)
            metrics.WORKER_SESSIONS.set(0)
            self._done.set()

    # -- helpers for the parts -----------------------------------------------------------------

    @property
    def gen(self) -> Generator:
        if self.generator is None:
            raise RuntimeError("the generator is not loaded yet")
        return self.generator

    def free_slots(self) -> int:
        return max(0, self.settings.max_sessions - len(self.streams) - self._starting)

    def _signal(self, event: asyncio.Event) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            event.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    # -- admission -----------------------------------------------------------------------------

    async def _admission(self) -> None:
        while not self._draining:
            free = self.free_slots()
            if free <= 0:
                self._changed.clear()
                await wait_event(self._changed, 1.0)
                continue
            try:
                jobs = await self.broker.claim_jobs(self.worker_id, free, block_s=CLAIM_BLOCK_S)
            except Exception as exc:
                log.warning(
                    "claiming failed: %s", exc, extra={"event": "claim_failed", "worker_id": self.worker_id}
                )
                await asyncio.sleep(1.0)
                continue
            await self.admit(jobs)

    async def admit(self, jobs: Sequence[Job]) -> None:
        """Start claimed or reclaimed jobs (hand them straight back when draining)."""
        for job in jobs:
            if self._draining:
                await self.broker.hand_back(job)
                continue
            self._starting += 1
            try:
                stream = await open_stream(self, job)
            except Exception as exc:
                log.exception(
                    "starting failed",
                    extra={
                        "event": "start_failed",
                        "session_id": job.session_id,
                        "worker_id": self.worker_id,
                    },
                )
                with contextlib.suppress(Exception):
                    await fail_unstarted(
                        self, job.session_id, "failed", "internal_error", f"cannot start: {exc}"
                    )
                stream = None
            finally:
                self._starting -= 1
            if stream is None:
                self._changed.set()
                continue
            self.streams[stream.id] = stream
            stream.start_publisher(self._on_end, self.wake)
            metrics.WORKER_SESSIONS.set(len(self.streams))
            self.wake.set()
            self._changed.set()

    # -- leaving -------------------------------------------------------------------------------

    async def _on_end(self, s: SessionStream) -> None:
        """Run by the session's publisher after everything queued before the end."""
        outcome = s.finishing or Outcome("end", "completed")
        try:
            if outcome.kind == "handback":
                await self._hand_back(s)
            elif outcome.kind == "end":
                await self._end(s, outcome)
            elif outcome.kind == "noticed":
                # Whoever ends a session publishes `ended` and counts the outcome: the front end.
                log.info("session ended by the front end (%s)", outcome.reason, extra=s.log_extra("released"))
            else:
                log.info("session dropped (%s)", outcome.reason, extra=s.log_extra("dropped"))
        finally:
            with contextlib.suppress(Exception):
                await self.engine.call(s.session.close)
            s.close_encoders()
            self.streams.pop(s.id, None)
            metrics.WORKER_SESSIONS.set(len(self.streams))
            self._changed.set()
            self.wake.set()

    async def _end(self, s: SessionStream, outcome: Outcome) -> None:
        b = self.broker
        if outcome.error_code is not None:
            await b.publish_event(
                s.id,
                {"type": "error", "code": outcome.error_code, "message": outcome.message, "retryable": False},
            )
        await b.update_session(s.id, frames_generated=s.frames_sent, chunks_generated=s.chunks_sent)
        if await b.end_session(s.id, outcome.state, outcome.reason, outcome.error_code):
            await self._publish_ended(s, outcome.reason)
        # else the front end ended it first; it published `ended` and counted the outcome

    async def _publish_ended(self, s: SessionStream, reason: str) -> None:
        await self.broker.publish_event(s.id, {"type": "ended", "reason": reason, "frames": s.frames_sent})
        metrics.SESSIONS_TOTAL.labels(reason).inc()
        log.info(
            "session ended: %s after %d frames",
            reason,
            s.frames_sent,
            extra=s.log_extra("ended", reason=reason, frames=s.frames_sent),
        )

    async def _hand_back(self, s: SessionStream) -> None:
        try:
            blob = await self.engine.call(take_snapshot, s.session, s.applied_cursor)
            await self.broker.save_snapshot(s.id, blob)
        except Exception as exc:  # the next worker resumes from an older snapshot or restarts
            log.warning("snapshot for hand-back failed: %s", exc, extra=s.log_extra("snapshot_failed"))
        await self.broker.update_session(s.id, frames_generated=s.frames_sent, chunks_generated=s.chunks_sent)
        ok = await self.broker.hand_back(s.job)
        log.info(
            "session handed back" if ok else "hand-back refused (job no longer ours)",
            extra=s.log_extra("handed_back", chunk=s.session.chunk_index),
        )

    # -- drain ---------------------------------------------------------------------------------

    def _finishes_in_time(self, s: SessionStream, deadline: float) -> bool:
        rate = self.frames_per_second
        if self._stopping or s.paused or s.max_frames is None or not rate:
            return False
        remaining = max(0, s.max_frames - s.next_frame)
        return time.monotonic() + remaining / rate <= deadline

    async def _drain(self, tasks: list[asyncio.Task[None]]) -> None:
        log.info(
            "draining %d session(s)",
            len(self.streams),
            extra={"event": "draining", "worker_id": self.worker_id},
        )
        deadline = time.monotonic() + (0.0 if self._stopping else self.settings.drain_timeout_s)
        self.heartbeat.poke.set()  # announce draining now
        admission = next((t for t in tasks if t.get_name() == "admission"), None)
        if admission is not None and not admission.done():
            await asyncio.wait([admission], timeout=CLAIM_BLOCK_S + 30)
        allowed: set[str] = set()
        step_loop = next((t for t in tasks if t.get_name() == "step-loop"), None)
        give_up = deadline + DRAIN_GRACE_S
        while self.streams:
            if time.monotonic() >= give_up:
                log.error(
                    "drain: %d session(s) did not leave in time; abandoning them",
                    len(self.streams),
                    extra={"event": "drain_abandoned", "worker_id": self.worker_id},
                )
                return
            late = time.monotonic() >= deadline or self._stopping
            for s in list(self.streams.values()):
                if s.finishing is not None:
                    continue
                if late or s.paused or (s.id not in allowed and not self._finishes_in_time(s, deadline)):
                    s.set_finishing(Outcome("handback", "drain"))
                else:
                    allowed.add(s.id)
            if step_loop is None or step_loop.done():  # no step loop left to queue the ends
                for s in self.streams.values():
                    if s.finishing is not None and not s.end_enqueued:
                        s.put_end()
            self.wake.set()
            self._changed.clear()
            await wait_event(self._changed, 0.1)
