"""The worker's generation loop: one batched engine step per iteration for all running sessions.

Per iteration:
  1. sessions that are leaving get their final outbox item (only here, between steps, so no
     chunk can follow it);
  2. the engine thread runs ONE `step_many` over every running, unpaused session that has
     room in its outbox, while the loop concurrently reads each session's new control
     messages and its record (to notice a DELETE by the front end);
  3. each chunk is trimmed to ``max_frames`` and queued for encoding + publishing (the next
     step starts at once, so encoding overlaps generation); due snapshots are taken;
  4. the control messages read in step 2 are applied: they take effect from the next chunk.

With nothing to step (all paused, or none held) it still polls controls and records every
`IDLE_POLL_S`, so ``resume``/``stop``/DELETE are noticed while paused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from engine.session import Chunk, Session, StreamEnded
from server.broker import TERMINAL_STATES, ControlEntry, SessionRecord
from server.logs import prompt_preview
from server.worker.control import InvalidControl, Pause, Resume, SetPrompt, SetSeed, Stop, parse_control
from server.worker.engine_thread import StepResult, step_isolated
from server.worker.snapshot_envelope import WorkerSnapshot
from server.worker.stream import MAX_INFLIGHT_CHUNKS, Outcome, SessionStream
from server.worker.waiting import wait_event

if TYPE_CHECKING:
    from server.worker.worker import Worker

log = logging.getLogger("rollcast.worker")

IDLE_POLL_S = 0.05
RATE_EMA = 0.3  # weight of the newest iteration in the frames-per-second estimate

Polled = tuple[list[ControlEntry], SessionRecord | None] | None


class StepLoop:
    def __init__(self, worker: Worker) -> None:
        self.w = worker

    async def run(self) -> None:
        w = self.w
        while not w.closed:
            self._enqueue_ends()
            active = [s for s in w.streams.values() if s.finishing is None]
            ready = [s for s in active if not s.paused and s.pending_chunks < MAX_INFLIGHT_CHUNKS]
            now, lead = time.monotonic(), w.settings.pace_lead_s
            # Pacing would let sessions drift apart in phase and lose batching: when one is due,
            # take along every session that would be due within another `lead` seconds.
            due_in = [s.due_in(now, lead) for s in ready]
            batch = (
                [s for s, d in zip(ready, due_in, strict=True) if d <= lead]
                if any(d <= 0 for d in due_in)
                else []
            )
            if not batch:
                w.wake.clear()
                await self._apply(active, await self._poll(active))
                if not any(s.finishing is not None and not s.end_enqueued for s in w.streams.values()):
                    wait = min([IDLE_POLL_S, *(s.due_in(time.monotonic(), lead) for s in ready)])
                    await wait_event(w.wake, max(wait, 0.0))
                continue
            t0 = time.perf_counter()
            step = asyncio.ensure_future(w.engine.call(step_isolated, w.gen, [s.session for s in batch]))
            try:
                polled = await self._poll(active)
            finally:
                results = await step
            self._note_rate(batch, results, time.perf_counter() - t0)
            due = self._dispatch(batch, results)
            if due:
                await self._snapshot(due)
            await self._apply(active, polled)

    # -- finishing -----------------------------------------------------------------------------

    def _enqueue_ends(self) -> None:
        for s in self.w.streams.values():
            if s.finishing is not None and not s.end_enqueued:
                s.put_end()

    # -- polling -------------------------------------------------------------------------------

    async def _poll(self, streams: list[SessionStream]) -> list[Polled]:
        b = self.w.broker

        async def one(s: SessionStream) -> Polled:
            try:
                entries, record = await asyncio.gather(
                    b.read_control(s.id, after_id=s.control_cursor), b.get_session(s.id)
                )
            except Exception as exc:  # a broker hiccup: try again next iteration
                log.warning("polling failed: %s", exc, extra=s.log_extra("poll_failed"))
                return None
            return entries, record

        return list(await asyncio.gather(*(one(s) for s in streams)))

    async def _apply(self, streams: list[SessionStream], polled: list[Polled]) -> None:
        ops: list[tuple[SessionStream, Any]] = []
        for s, got in zip(streams, polled, strict=True):
            if got is None or s.finishing is not None:
                continue
            entries, record = got
            if record is None:
                s.set_finishing(Outcome("lost", "vanished"))
                continue
            if record.state in TERMINAL_STATES:
                log.info("session ended by the front end", extra=s.log_extra("noticed_end"))
                s.set_finishing(Outcome("noticed", record.end_reason or "deleted"))
                continue
            if record.worker_id not in (None, self.w.worker_id):
                s.set_finishing(Outcome("lost", "taken_over"))
                continue
            for entry in entries:
                s.control_cursor = entry.id
                if s.finishing is None:
                    self._control(s, entry.message, ops)
        if ops:
            results = await self.w.engine.call(_apply_ops, [(s.session, op) for s, op in ops])
            for (s, op), result in zip(ops, results, strict=True):
                if isinstance(result, BaseException):
                    s.put_event(_error("invalid_message", f"{op.type}: {result}"))
                elif isinstance(op, SetPrompt):
                    s.transitions[result] = op.transition or s.session.params.transition
        for s in streams:
            if s.finishing is None:
                s.applied_cursor = s.control_cursor

    def _control(self, s: SessionStream, raw: Any, ops: list[tuple[SessionStream, Any]]) -> None:
        try:
            msg = parse_control(raw, self.w.settings.max_prompt_chars)
        except InvalidControl as exc:
            s.put_event(_error("invalid_message", str(exc)))
            return
        extra = s.log_extra(f"control_{msg.type}")
        if isinstance(msg, SetPrompt):
            log.info("prompt change: %s", prompt_preview(msg.prompt), extra=extra)
            ops.append((s, msg))
        elif isinstance(msg, SetSeed):
            ops.append((s, msg))
        elif isinstance(msg, Pause):
            if not s.paused:
                s.paused = True
                s.put_event({"type": "paused", "frame": s.next_frame})
                s.put_action("state", lambda: s.broker.update_session(s.id, state="paused"))
                log.info("paused", extra=extra)
        elif isinstance(msg, Resume):
            if s.paused:
                s.paused = False
                s.restart_clock(time.monotonic())
                s.put_event({"type": "resumed", "frame": s.next_frame})
                s.put_action("state", lambda: s.broker.update_session(s.id, state="running"))
                log.info("resumed", extra=extra)
        elif isinstance(msg, Stop):
            log.info("stop requested (%s)", msg.reason, extra=extra)
            s.set_finishing(Outcome("end", msg.reason))

    # -- results -------------------------------------------------------------------------------

    def _note_rate(self, batch: list[SessionStream], results: list[StepResult], elapsed: float) -> None:
        frames = [r.num_frames for r in results if isinstance(r, Chunk)]
        if frames and elapsed > 0:
            rate = max(frames) / elapsed  # frames per second each session gets at this batch size
            prev = self.w.frames_per_second
            self.w.frames_per_second = rate if prev is None else (1 - RATE_EMA) * prev + RATE_EMA * rate

    def _dispatch(self, batch: list[SessionStream], results: list[StepResult]) -> list[SessionStream]:
        """Queue chunks for publishing; returns the sessions due for a snapshot."""
        due: list[SessionStream] = []
        every = self.w.settings.snapshot_every_chunks
        for s, result in zip(batch, results, strict=True):
            if isinstance(result, StreamEnded):
                s.set_finishing(Outcome("end", "completed"))
            elif isinstance(result, BaseException):
                log.warning(
                    "generation failed: %r",
                    result,
                    extra=s.log_extra("generation_failed"),
                    exc_info=result,
                )
                s.set_finishing(Outcome.failed("generation_failed", f"generation failed: {result}"))
            elif not s.drop:
                if s.clock_start is None:
                    s.clock_start = time.monotonic()  # the first chunk is ready: playback starts
                self._accept(s, result)
                if every and s.finishing is None and (result.index + 1) % every == 0:
                    due.append(s)
        return due

    def _accept(self, s: SessionStream, chunk: Chunk) -> None:
        if chunk.index < s.skip_below_chunk:
            # Published by the worker this session was taken over from (prompt_applied too).
            # Only chunks before the first published one are skipped, so the outbox is empty.
            s.last_revision = chunk.prompt_revision
            return
        n = chunk.num_frames
        if s.max_frames is not None:
            n = min(n, s.max_frames - chunk.first_frame)
        if n > 0:
            s.put_chunk(chunk, chunk.frames[:n])
        if (s.max_frames is not None and chunk.first_frame + n >= s.max_frames) or s.session.ended:
            s.set_finishing(Outcome("end", "completed"))

    async def _snapshot(self, streams: list[SessionStream]) -> None:
        blobs = await self.w.engine.call(_take_snapshots, [(s.session, s.applied_cursor) for s in streams])
        for s, blob in zip(streams, blobs, strict=True):
            if isinstance(blob, BaseException):
                log.warning("snapshot failed: %r", blob, extra=s.log_extra("snapshot_failed"))
                continue

            async def save(s: SessionStream = s, blob: bytes = blob) -> None:
                await s.broker.save_snapshot(s.id, blob)

            s.put_action("snapshot", save)  # after the chunk it covers is published


def _error(code: str, message: str, retryable: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "retryable": retryable}


def _apply_ops(ops: list[tuple[Session, Any]]) -> list[Any]:
    """Engine thread: apply prompt / seed changes; returns revisions (or the exception)."""
    out: list[Any] = []
    for session, op in ops:
        try:
            if isinstance(op, SetPrompt):
                out.append(session.set_prompt(op.prompt, op.transition, op.over_chunks))
            else:
                session.set_seed(op.seed)
                out.append(None)
        except Exception as exc:
            out.append(exc)
    return out


def take_snapshot(session: Session, control_cursor: str) -> bytes:
    """Engine thread: a compact engine snapshot wrapped with the worker's control cursor."""
    engine = session.snapshot("compact").to_bytes()
    meta = {"chunk_index": session.chunk_index, "frame_index": session.frame_index}
    return WorkerSnapshot(engine, control_cursor, meta).to_bytes()


def _take_snapshots(items: list[tuple[Session, str]]) -> list[bytes | BaseException]:
    out: list[bytes | BaseException] = []
    for session, cursor in items:
        try:
            out.append(take_snapshot(session, cursor))
        except Exception as exc:
            out.append(exc)
    return out
