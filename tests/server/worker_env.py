"""Helpers for the worker tests: tiny settings, running workers, reading a session's output.

The worker tests run the real engine ("test" preset: 48x32 pixels, chunks of 9 then 12
frames) against both brokers (see broker_env.py), one torch thread so that two CPU cores
shared by several test runs are not oversubscribed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from broker_env import BrokerEnv

from engine.generator import Generator
from server.broker import Broker, OutputEntry, SessionRecord, new_session_id
from server.media import MediaKind, decode_fmp4_frames, decode_jpeg, unpack_media
from server.settings import Settings
from server.worker import Worker

FPS = 16
WIDTH, HEIGHT = 48, 32


def worker_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "preset": "test",
        "torch_threads": 1,
        "max_sessions": 2,
        "heartbeat_interval_s": 0.2,
        "heartbeat_ttl_s": 1.0,
        "snapshot_every_chunks": 2,
        "drain_timeout_s": 5.0,
        "log_level": "WARNING",
    }
    base.update(overrides)
    return Settings(**base)


def make_generator() -> Generator:
    # Seeded random weights (config seed 0): every generator built here has the same weights.
    return Generator.from_preset("test")


async def create(
    broker: Broker,
    prompt: str = "a red circle moving left",
    seed: int = 7,
    *,
    max_frames: int | None = None,
    fmt: str = "fmp4",
    **params: Any,
) -> str:
    sid = new_session_id()
    p = {"format": fmt, "max_frames": max_frames, "transition": "cut", "blend_chunks": 2, **params}
    await broker.create_session(SessionRecord(id=sid, prompt=prompt, seed=seed, params=p))
    return sid


async def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running_worker(
    broker: Broker,
    settings: Settings | None = None,
    *,
    generator: Generator | None = None,
    worker_id: str | None = None,
) -> AsyncIterator[tuple[Worker, asyncio.Task[None]]]:
    w = Worker(
        settings or worker_settings(), broker, generator=generator or make_generator(), worker_id=worker_id
    )
    task = asyncio.create_task(w.run())
    try:
        await wait_for(lambda: w.ready or task.done(), 30, "worker ready")
        if task.done():
            task.result()
        yield w, task
    finally:
        if not task.done():
            await w.stop()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class Output:
    """Everything read so far from one session's output stream."""

    broker: Broker
    session_id: str
    entries: list[OutputEntry] = field(default_factory=list)
    cursor: str = "0"

    async def poll(self, block_s: float = 0.05) -> None:
        got = await self.broker.read_output(self.session_id, self.cursor, block_s=block_s, count=500)
        if got:
            self.entries.extend(got)
            self.cursor = got[-1].id

    async def until(
        self, pred: Callable[[Output], bool], timeout: float = 30.0, what: str = "output"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events: {self.types()}")
            await self.poll()

    async def until_event(self, type_: str, n: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        await self.until(lambda o: len(o.events(type_)) >= n, timeout, f"{n} x {type_}")
        return self.events(type_)[n - 1]

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [
            e.event for e in self.entries if e.kind == "event" and (type_ is None or e.event["type"] == type_)
        ]  # type: ignore[misc]

    def types(self) -> list[str]:
        return [e.event["type"] if e.kind == "event" else "media" for e in self.entries]  # type: ignore[index]

    def media(self) -> list[Any]:
        return [unpack_media(e.data) for e in self.entries if e.kind == "media"]


def decode_session(init: bytes, out: Output) -> list[Any]:
    """Decode init + every fragment of the session (in order) into `DecodedFrame`s."""
    frags = [m.payload for m in out.media() if m.kind == MediaKind.FRAGMENT]
    return decode_fmp4_frames(init, frags)


def decode_jpegs(out: Output) -> list[np.ndarray]:
    return [decode_jpeg(m.payload) for m in out.media() if m.kind == MediaKind.JPEG]


def reference_frames(prompt: str, seed: int, n: int, generator: Generator | None = None) -> np.ndarray:
    """The frames a session generates stepping alone on its own generator: uint8 [n, H, W, 3]."""
    torch.set_num_threads(1)  # OpenMP thread counts are per calling thread: set it here too
    gen = generator or make_generator()
    s = gen.open(prompt, seed=seed)
    chunks = []
    while sum(c.shape[0] for c in chunks) < n:
        chunks.append(s.step().frames)
    s.close()
    return np.concatenate(chunks)[:n]


def encoded_reference(
    frames: np.ndarray, chunk_sizes: list[int], settings: Settings | None = None
) -> np.ndarray:
    """``frames`` encoded chunk by chunk as the worker does, then decoded: uint8 [n, H, W, 3].

    The worker's decoded output should match this almost exactly (H.264 loss is the same),
    which is a much sharper check than comparing with the raw frames.
    """
    from server.media import FMP4Encoder, decode_fmp4

    s = settings or worker_settings()
    enc = FMP4Encoder(WIDTH, HEIGHT, FPS, crf=s.crf, preset=s.x264_preset, threads=1)
    frags, at = [], 0
    for n in chunk_sizes:
        frags.append(enc.encode_chunk(frames[at : at + n]))
        at += n
    return np.stack(decode_fmp4(enc.init_segment(), frags))


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


async def open_worker_env(kind: str) -> AsyncIterator[BrokerEnv]:
    from broker_env import open_env

    async for env in open_env(kind):
        yield env
