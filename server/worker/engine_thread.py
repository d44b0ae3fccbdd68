"""The one thread that owns the accelerator and runs every engine call of a worker.

Why one thread: CUDA work issued from several threads interleaves unpredictably (and the engine's
sessions are not thread-safe), while the event loop must never block on a forward pass. So the
worker hands each engine call — loading the model, opening/resuming/closing sessions, applying
prompt changes, the batched `step_many`, snapshots — to this single-thread executor and awaits
the result; encoding runs in a separate pool so it overlaps the next step.

`step_isolated` is the failure-isolation rule: a batch that raises is retried session by session
so that only the failing session(s) fail.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from engine.generator import Generator
from engine.session import Chunk, Session

log = logging.getLogger("rollcast.worker.engine")
T = TypeVar("T")


class EngineThread:
    """A single-thread executor for engine calls (see the module docstring)."""

    def __init__(self, torch_threads: int | None = None) -> None:
        self._torch_threads = torch_threads
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rollcast-engine", initializer=self._init_thread
        )

    def _init_thread(self) -> None:
        # Set on the engine thread itself: with OpenMP the intra-op thread count applies to the
        # thread that calls set_num_threads (parallel regions it starts).
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the engine thread (under ``no_grad``) and await it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(_no_grad, fn, *args, **kwargs))

    async def load(
        self, preset: str, *, device: str = "cpu", weights: str | None = None, sparsity: float | None = None
    ) -> Generator:
        """Build the generator on the engine thread (CUDA context and weights live there).

        sparsity: turn on sparse attention (VSA) at this sparsity; None keeps the preset's setting.
        """
        overrides = None if sparsity is None else {"sparse": {"enabled": True, "sparsity": sparsity}}
        return await self.call(
            Generator.from_preset, preset, device=device, weights=weights, overrides=overrides
        )

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


def _no_grad(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with torch.no_grad():
        return fn(*args, **kwargs)


StepResult = Chunk | BaseException


def step_isolated(generator: Generator, sessions: Sequence[Session]) -> list[StepResult]:
    """One batched `step_many`; if it raises, retry each session alone to isolate failures.

    Returns a chunk or the exception for each session, in order. Before the retries each
    session's random-number state is restored, so a failure while the batch was being planned
    (the common case: a bad prompt, a broken session) leaves the other sessions' frames exactly
    as if nothing had happened. A session whose chunk was already completed inside the failed
    batch (a failure late in decoding) loses that chunk, which shows as a jump in its chunk and
    frame indices (allowed by the protocol).
    """
    if not sessions:
        return []
    before = [(s.chunk_index, s.rng.get_state()) for s in sessions]
    try:
        return list(generator.step_many(list(sessions)))
    except Exception as batch_exc:
        if len(sessions) == 1:
            return [batch_exc]
        log.warning("batched step of %d sessions failed (%s); retrying one by one", len(sessions), batch_exc)
    results: list[StepResult] = []
    for session, (chunk_index, rng_state) in zip(sessions, before, strict=True):
        if session.chunk_index == chunk_index:
            session.rng.set_state(rng_state)
        try:
            results.append(generator.step_many([session])[0])
        except Exception as exc:
            results.append(exc)
    return results


def cuda_memory(generator: Generator | None) -> tuple[int, int]:
    """(allocated, reserved) bytes on the generator's CUDA device; (0, 0) elsewhere."""
    if generator is None or generator.device.type != "cuda":
        return 0, 0
    return (
        int(torch.cuda.memory_allocated(generator.device)),
        int(torch.cuda.memory_reserved(generator.device)),
    )
