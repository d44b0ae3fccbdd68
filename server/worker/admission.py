"""Turning a claimed job into a running `SessionStream`: fresh start, resume, or restart.

* Fresh (state ``starting``): open an engine session (the record's seed; a negative seed means
  "pick one", and the pick is written back), create the encoder, store the fMP4 init segment
  with ``set_init_segment`` **before** publishing ``started`` (the front end sends each viewer
  ``get_init_segment`` first, so it must exist by the time a viewer learns the session started),
  set the record to ``running`` and publish ``started``.
* Taken over (state ``running``/``paused``: handed back by a draining worker, or reclaimed from
  a dead one) with a snapshot: resume the engine session from it; chunk and frame indices
  continue. Chunks the previous worker already published (the record's ``chunks_generated``;
  more than the snapshot has when it crashed after its last snapshot) are regenerated but not
  published again, so viewers see one continuous stream. Nothing is announced to viewers.
* Taken over without a usable snapshot: restart from frame 0 with a note to viewers (an
  ``error`` event ``session_restarted``, retryable) and a new ``started``.
* A job delivered more than ``max_job_deliveries`` times (it keeps killing workers) fails with
  ``worker_lost``.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

from engine.session import SessionParams
from server import metrics
from server.broker import TERMINAL_STATES, Job, SessionRecord
from server.logs import prompt_preview
from server.worker.snapshot_envelope import WorkerSnapshot
from server.worker.stream import SessionStream

if TYPE_CHECKING:
    from server.worker.worker import Worker

log = logging.getLogger("rollcast.worker")


def _params(worker: Worker, record: SessionRecord) -> dict[str, Any]:
    info = worker.gen.info
    p = record.params
    limits = [m for m in (p.get("max_frames"), worker.settings.max_frames_limit) if m is not None]
    fmt = p.get("format") or "fmp4"
    if fmt not in ("fmp4", "jpeg"):
        raise ValueError(f"unsupported format {fmt!r}")
    return {
        "format": fmt,
        "fps": float(p.get("fps") or info["fps"]),
        "width": int(info["width"]),
        "height": int(info["height"]),
        "max_frames": min(int(m) for m in limits) if limits else None,
        "engine": SessionParams(
            transition=p.get("transition") or "cut", blend_chunks=int(p.get("blend_chunks") or 2)
        ),
    }


async def fail_unstarted(worker: Worker, session_id: str, reason: str, code: str, message: str) -> None:
    """End a session that never became a stream on this worker (error + ended events)."""
    b = worker.broker
    await b.publish_event(session_id, {"type": "error", "code": code, "message": message, "retryable": False})
    if await b.end_session(session_id, "failed", reason, code):
        rec = await b.get_session(session_id)
        frames = rec.frames_generated if rec is not None else 0
        await b.publish_event(session_id, {"type": "ended", "reason": reason, "frames": frames})
        metrics.SESSIONS_TOTAL.labels(reason).inc()
    log.warning(
        "session failed before streaming: %s",
        message,
        extra={"event": "failed", "session_id": session_id, "worker_id": worker.worker_id, "code": code},
    )


async def open_stream(worker: Worker, job: Job) -> SessionStream | None:
    """Start, resume or restart the job's session; None when there is nothing to run."""
    b = worker.broker
    record = await b.get_session(job.session_id)
    if record is None or record.state in TERMINAL_STATES:
        await b.ack_job(job)
        return None
    if job.deliveries > worker.settings.max_job_deliveries:
        await fail_unstarted(
            worker,
            record.id,
            "worker_lost",
            "worker_lost",
            f"the session was delivered {job.deliveries} times and no worker could continue it",
        )
        return None
    try:
        params = _params(worker, record)
    except (ValueError, TypeError) as exc:
        await fail_unstarted(worker, record.id, "failed", "invalid_request", str(exc))
        return None
    taken_over = record.state in ("running", "paused")
    if taken_over:
        stream = await _resume(worker, job, record, params)
        if stream is not None:
            return stream
    return await _start_fresh(worker, job, record, params, restart=taken_over)


def _stream(
    worker: Worker, job: Job, record: SessionRecord, params: dict[str, Any], session: Any
) -> SessionStream:
    return SessionStream(
        record=record,
        job=job,
        session=session,
        settings=worker.settings,
        broker=worker.broker,
        encode_pool=worker.encode_pool,
        worker_id=worker.worker_id,
        format=params["format"],
        fps=params["fps"],
        width=params["width"],
        height=params["height"],
        max_frames=params["max_frames"],
    )


async def _resume(
    worker: Worker, job: Job, record: SessionRecord, params: dict[str, Any]
) -> SessionStream | None:
    blob = await worker.broker.load_snapshot(record.id)
    if blob is None:
        return None
    try:
        snap = WorkerSnapshot.from_bytes(blob)
        session = await worker.engine.call(worker.gen.resume, snap.engine)
    except Exception as exc:
        log.warning(
            "cannot resume from the snapshot (%s); restarting",
            exc,
            extra={"event": "resume_failed", "session_id": record.id, "worker_id": worker.worker_id},
        )
        return None
    s = _stream(worker, job, record, params, session)
    s.control_cursor = s.applied_cursor = snap.control_cursor
    s.paused = record.state == "paused"
    s.frames_sent, s.chunks_sent = record.frames_generated, record.chunks_generated
    s.skip_below_chunk = record.chunks_generated
    s.last_revision = session.prompt_revision
    if session.pending is not None:
        s.transitions[session.pending.revision] = session.pending.transition
    s.measure_ttff = record.chunks_generated == 0
    await s.prepare_encoder(start_frame=session.frame_index, start_sequence=session.chunk_index)
    if s.init is not None:
        stored = await worker.broker.get_init_segment(record.id)
        if stored is None:
            await worker.broker.set_init_segment(record.id, s.init)
        elif stored != s.init:
            await s.replace_init(s.init)
    await worker.broker.update_session(record.id, worker_id=worker.worker_id)
    log.info(
        "session resumed from snapshot at chunk %d (published: %d)",
        session.chunk_index,
        record.chunks_generated,
        extra={
            "event": "resumed_snapshot",
            "session_id": record.id,
            "worker_id": worker.worker_id,
            "deliveries": job.deliveries,
        },
    )
    return s


async def _start_fresh(
    worker: Worker, job: Job, record: SessionRecord, params: dict[str, Any], *, restart: bool
) -> SessionStream | None:
    b = worker.broker
    seed = record.seed if record.seed >= 0 else random.randrange(0, 2**31 - 1)
    try:
        session = await worker.engine.call(
            worker.gen.open, record.prompt, seed=seed, params=params["engine"], session_id=record.id
        )
    except Exception as exc:
        await fail_unstarted(
            worker, record.id, "failed", "generation_failed", f"cannot open the session: {exc}"
        )
        return None
    s = _stream(worker, job, record, params, session)
    s.measure_ttff = not restart
    await s.prepare_encoder()
    if restart:
        await b.publish_event(
            record.id,
            {
                "type": "error",
                "code": "session_restarted",
                "message": "the worker running this session was lost and no snapshot was available; "
                "the stream restarts from frame 0",
                "retryable": True,
            },
        )
    if s.init is not None:
        await b.set_init_segment(record.id, s.init)
    now = time.time()
    update: dict[str, Any] = {
        "state": "running",
        "worker_id": worker.worker_id,
        "width": s.width,
        "height": s.height,
        "fps": s.fps,
        "codec": s.codec or "jpeg",
        "frames_generated": 0,
        "chunks_generated": 0,
    }
    if not restart:
        update["started_at"] = now
        metrics.QUEUE_WAIT.observe(max(0.0, now - record.created_at))
    if seed != record.seed:
        update["seed"] = seed
    await b.update_session(record.id, **update)
    started: dict[str, Any] = {
        "type": "started",
        "width": s.width,
        "height": s.height,
        "fps": s.fps,
        "format": s.format,
        "mime": s.mime,
    }
    if s.codec is not None:
        started["codec"] = s.codec
    await b.publish_event(record.id, started)
    log.info(
        "session %s: %s",
        "restarted" if restart else "started",
        prompt_preview(record.prompt),
        extra={
            "event": "restarted" if restart else "started",
            "session_id": record.id,
            "worker_id": worker.worker_id,
            "seed": seed,
            "format": s.format,
            "max_frames": s.max_frames,
        },
    )
    return s
