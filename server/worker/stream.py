"""One session held by a worker: its state, its ordered outbox, encoding and publishing.

Ordering rule: everything a session publishes (``prompt_applied``, ``chunk`` + its media,
``paused``/``resumed``, ``error``, ``ended``, snapshot saves) goes through the session's outbox,
a FIFO drained by one publisher task. So a chunk's event always precedes its media, chunk *n*
precedes chunk *n+1*, and ``paused`` or ``ended`` come after the last chunk generated before
them — while the engine thread is already generating the next chunk (the publisher encodes in
the encode pool, so encoding chunk *n* overlaps generating chunk *n+1*).

Only the worker's step loop puts chunks and the final `_End` into the outbox, always between
two engine steps, so nothing can follow the end. A session that must stop publishing at once
(its job was taken over, or the front end ended it) sets ``drop``: queued items are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from engine.session import Chunk, Session
from server import metrics
from server.broker import Broker, Job, SessionNotFound, SessionRecord
from server.media import FMP4Encoder, JPEGEncoder, MediaKind, pack_media
from server.settings import Settings

log = logging.getLogger("rollcast.worker")

MAX_INFLIGHT_CHUNKS = 2  # generated but not yet published; bounds memory if encoding lags

OutcomeKind = Literal["end", "noticed", "handback", "lost"]


@dataclass(frozen=True)
class Outcome:
    """How a held session leaves the worker.

    end: the worker ends it (``end_session`` + ``ended`` event; ``reason`` is ended.reason).
    noticed: the front end ended it (and published ``ended``); the worker just lets go.
    handback: drain; snapshot + ``hand_back``, nothing terminal is published.
    lost: another worker owns the job now (or the session vanished); no broker writes at all.
    """

    kind: OutcomeKind
    reason: str = ""
    state: Literal["ended", "failed"] = "ended"
    error_code: str | None = None
    message: str = ""

    @classmethod
    def failed(cls, code: str, message: str) -> Outcome:
        return cls("end", "failed", "failed", code, message)


class EncodeError(RuntimeError):
    """Encoding a chunk failed; fails only this session."""


@dataclass
class _ChunkItem:
    chunk: Chunk
    frames: np.ndarray  # uint8 [n, H, W, 3], trimmed to max_frames


@dataclass
class _EventItem:
    event: dict[str, Any]


@dataclass
class _ActionItem:
    action: Callable[[], Awaitable[None]]
    name: str


@dataclass
class _End:
    pass


@dataclass
class SessionStream:
    """A running session on this worker (see the module docstring)."""

    record: SessionRecord
    job: Job
    session: Session
    settings: Settings
    broker: Broker
    encode_pool: Executor
    worker_id: str
    format: Literal["fmp4", "jpeg"]
    fps: float
    width: int
    height: int
    max_frames: int | None
    control_cursor: str = "0"  # last control entry read
    applied_cursor: str = "0"  # last control entry applied to the engine session
    paused: bool = False
    frames_sent: int = 0  # next frame index to publish
    chunks_sent: int = 0
    skip_below_chunk: int = 0  # resumed from an older snapshot: these chunks were published
    last_revision: int = 0
    transitions: dict[int, str] = field(default_factory=dict)  # prompt revision -> transition
    measure_ttff: bool = True
    finishing: Outcome | None = None
    drop: bool = False
    end_enqueued: bool = False
    pending_chunks: int = 0
    clock_start: float | None = None  # monotonic time at which frame 0 of the stream "plays"
    init: bytes | None = None
    _fmp4: FMP4Encoder | None = None
    _jpeg: JPEGEncoder | None = None
    _outbox: asyncio.Queue[_ChunkItem | _EventItem | _ActionItem | _End] = field(
        default_factory=asyncio.Queue
    )
    _task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.record.id

    def due_in(self, now: float, lead_s: float) -> float:
        """Seconds until this session should generate again to stay `lead_s` ahead of real
        time (<= 0: now). Real time starts with the first chunk and stops while paused."""
        if self.clock_start is None or lead_s <= 0:
            return 0.0
        ahead = self.session.frame_index / self.fps - (now - self.clock_start)
        return ahead - lead_s

    def restart_clock(self, now: float) -> None:
        """Re-anchor real time so that the stream is exactly at its live edge (after a pause)."""
        self.clock_start = now - self.session.frame_index / self.fps

    @property
    def runnable(self) -> bool:
        return self.finishing is None and not self.paused

    @property
    def next_frame(self) -> int:
        """Index of the next frame the engine will generate."""
        return self.session.frame_index

    def log_extra(self, event: str, **fields: Any) -> dict[str, Any]:
        return {"event": event, "session_id": self.id, "worker_id": self.worker_id, **fields}

    # -- encoders (called in the encode pool) ------------------------------------------------

    def _new_fmp4(self, start_frame: int, start_sequence: int) -> FMP4Encoder:
        return FMP4Encoder(
            self.width,
            self.height,
            self.fps,
            crf=self.settings.crf,
            preset=self.settings.x264_preset,
            threads=1,  # one encoder per session, parallel across sessions: no oversubscription
            start_frame=start_frame,
            start_sequence=start_sequence,
        )

    async def prepare_encoder(self, start_frame: int = 0, start_sequence: int = 0) -> None:
        """Create the encoder (in the encode pool); sets ``init`` in fMP4 mode."""

        def make() -> None:
            if self.format == "jpeg":
                self._jpeg = JPEGEncoder(self.settings.jpeg_quality)
            else:
                self._fmp4 = self._new_fmp4(start_frame, start_sequence)
                self.init = self._fmp4.init_segment()

        await asyncio.get_running_loop().run_in_executor(self.encode_pool, make)

    @property
    def codec(self) -> str | None:
        return self._fmp4.codec_string if self._fmp4 is not None else None

    @property
    def mime(self) -> str:
        return self._fmp4.mime_type if self._fmp4 is not None else "image/jpeg"

    def _encode(
        self, index: int, first_frame: int, frames: np.ndarray
    ) -> tuple[list[tuple[bytes, dict]], bool]:
        """Framed media messages (+ metadata) for one chunk; True if the init segment changed."""
        n = int(frames.shape[0])
        if self.format == "jpeg":
            assert self._jpeg is not None
            images = self._jpeg.encode_frames(frames)
            return [
                (
                    pack_media(MediaKind.JPEG, index, first_frame + i, 1, img),
                    {"kind": "jpeg", "chunk": index, "first_frame": first_frame + i, "frames": 1},
                )
                for i, img in enumerate(images)
            ], False
        init_changed = False
        enc = self._fmp4
        if enc is None or enc.frames_encoded != first_frame:
            # A jump in frame indices (resumed from an older snapshot, or a chunk lost in a failed
            # batch): a fresh encoder keeps the fragment times equal to the frame indices.
            if enc is not None:
                enc.close()
            enc = self._fmp4 = self._new_fmp4(first_frame, index)
            init_changed = enc.init_segment() != self.init
            self.init = enc.init_segment()
        fragment = enc.encode_chunk(frames)
        meta = {"kind": "fragment", "chunk": index, "first_frame": first_frame, "frames": n}
        return [(pack_media(MediaKind.FRAGMENT, index, first_frame, n, fragment), meta)], init_changed

    async def replace_init(self, init: bytes) -> None:
        """The init segment changed mid-stream (a takeover by a worker whose x264 writes other
        SPS/PPS): store it for new viewers and send it in-band so that connected viewers get
        it before the next fragment."""
        log.warning("init segment changed mid-stream", extra=self.log_extra("init_changed"))
        await self.broker.set_init_segment(self.id, init)
        meta = {"kind": "init", "chunk": 0, "first_frame": 0, "frames": 0}
        await self.broker.publish_media(self.id, pack_media(MediaKind.INIT, 0, 0, 0, init), meta)

    def close_encoders(self) -> None:
        if self._fmp4 is not None:
            self._fmp4.close()
        if self._jpeg is not None:
            self._jpeg.close()

    # -- outbox (called by the worker's step loop) --------------------------------------------

    def set_finishing(self, outcome: Outcome, *, drop: bool = False) -> None:
        """Leave the worker with ``outcome`` (the first one wins, but losing the job overrides)."""
        if self.finishing is None or (outcome.kind == "lost" and self.finishing.kind != "lost"):
            self.finishing = outcome
        self.drop = self.drop or drop or outcome.kind in ("lost", "noticed")

    def put_chunk(self, chunk: Chunk, frames: np.ndarray) -> None:
        self.pending_chunks += 1
        self._outbox.put_nowait(_ChunkItem(chunk, frames))

    def put_event(self, event: dict[str, Any]) -> None:
        self._outbox.put_nowait(_EventItem(event))

    def put_action(self, name: str, action: Callable[[], Awaitable[None]]) -> None:
        self._outbox.put_nowait(_ActionItem(action, name))

    def put_end(self) -> None:
        self.end_enqueued = True
        self._outbox.put_nowait(_End())

    # -- publisher task ------------------------------------------------------------------------

    def start_publisher(
        self, on_end: Callable[[SessionStream], Awaitable[None]], wake: asyncio.Event
    ) -> None:
        self._task = asyncio.create_task(self._publisher(on_end, wake), name=f"publish-{self.id}")

    @property
    def publisher_done(self) -> bool:
        return self._task is not None and self._task.done()

    def cancel_publisher(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _publisher(
        self, on_end: Callable[[SessionStream], Awaitable[None]], wake: asyncio.Event
    ) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, _End):
                try:
                    await on_end(self)
                except Exception:
                    log.exception("ending session failed", extra=self.log_extra("end_error"))
                return
            try:
                if not self.drop:
                    await self._publish(item)
            except EncodeError as exc:
                log.warning("encoding failed: %s", exc, extra=self.log_extra("encode_failed"))
                self.set_finishing(Outcome.failed("encoding_failed", f"encoding failed: {exc}"), drop=True)
            except SessionNotFound:
                self.set_finishing(Outcome("lost", "vanished"), drop=True)
            except Exception as exc:
                log.exception("publishing failed", extra=self.log_extra("publish_failed"))
                self.set_finishing(Outcome.failed("internal_error", f"publishing failed: {exc}"), drop=True)
            finally:
                if isinstance(item, _ChunkItem):
                    self.pending_chunks -= 1
                    wake.set()

    async def _publish(self, item: _ChunkItem | _EventItem | _ActionItem) -> None:
        if isinstance(item, _EventItem):
            await self.broker.publish_event(self.id, item.event)
        elif isinstance(item, _ActionItem):
            await item.action()
        else:
            await self._publish_chunk(item.chunk, item.frames)

    async def _publish_chunk(self, chunk: Chunk, frames: np.ndarray) -> None:
        loop = asyncio.get_running_loop()
        n = int(frames.shape[0])
        t0 = time.perf_counter()
        try:
            messages, init_changed = await loop.run_in_executor(
                self.encode_pool, self._encode, chunk.index, chunk.first_frame, frames
            )
        except Exception as exc:
            raise EncodeError(str(exc) or type(exc).__name__) from exc
        encode_s = time.perf_counter() - t0
        if init_changed and self.init is not None:
            await self.replace_init(self.init)
        # The record is updated first: a worker dying half-way through publishing then leaves a
        # gap for its successor (allowed: viewers may lose whole chunks), never a repeated chunk.
        update: dict[str, Any] = {
            "frames_generated": chunk.first_frame + n,
            "chunks_generated": chunk.index + 1,
        }
        if chunk.prompt_revision != self.last_revision:
            update["prompt"] = chunk.prompt
        await self.broker.update_session(self.id, **update)
        if chunk.prompt_revision != self.last_revision:
            transition = self.transitions.get(chunk.prompt_revision, self.session.params.transition)
            # revisions superseded before reaching a chunk ("the last call wins") are gone too
            self.transitions = {r: t for r, t in self.transitions.items() if r > chunk.prompt_revision}
            await self.broker.publish_event(
                self.id,
                {
                    "type": "prompt_applied",
                    "prompt": chunk.prompt,
                    "revision": chunk.prompt_revision,
                    "transition": transition,
                    "frame": chunk.first_frame,
                    "chunk": chunk.index,
                },
            )
            self.last_revision = chunk.prompt_revision
            log.info("prompt applied", extra=self.log_extra("prompt_applied", revision=chunk.prompt_revision))
        denoise_s, decode_s = chunk.timings.denoise_s, chunk.timings.decode_s
        await self.broker.publish_event(
            self.id,
            {
                "type": "chunk",
                "index": chunk.index,
                "first_frame": chunk.first_frame,
                "frames": n,
                "timings": {
                    "denoise_ms": round(denoise_s * 1000, 3),
                    "decode_ms": round(decode_s * 1000, 3),
                    "encode_ms": round(encode_s * 1000, 3),
                },
                "steps": chunk.steps,
                "prompt_revision": chunk.prompt_revision,
            },
        )
        for data, meta in messages:
            # published_at: the relay measures publish -> send latency from it
            await self.broker.publish_media(self.id, data, {**meta, "published_at": time.time()})
        self.frames_sent = chunk.first_frame + n
        self.chunks_sent = chunk.index + 1
        self._observe(chunk, n, encode_s)

    def _observe(self, chunk: Chunk, n: int, encode_s: float) -> None:
        t = chunk.timings
        metrics.CHUNK_SECONDS.labels("denoise").observe(t.denoise_s)
        metrics.CHUNK_SECONDS.labels("decode").observe(t.decode_s)
        metrics.CHUNK_SECONDS.labels("encode").observe(encode_s)
        metrics.CHUNK_SECONDS.labels("total").observe(t.denoise_s + t.decode_s + encode_s)
        metrics.FRAMES_GENERATED.inc(n)
        metrics.DENOISE_STEPS.inc(chunk.steps)
        if self.measure_ttff:
            self.measure_ttff = False
            metrics.TIME_TO_FIRST_FRAME.observe(max(0.0, time.time() - self.record.created_at))
