"""Worker with several sessions: batching into one step_many, capacity, failure isolation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from broker_env import BROKER_KINDS, BrokerEnv
from worker_env import (
    FPS,
    Output,
    create,
    decode_session,
    encoded_reference,
    make_generator,
    mean_abs,
    open_worker_env,
    reference_frames,
    running_worker,
    wait_for,
    worker_settings,
)

from engine.generator import Generator
from engine.session import Session

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=BROKER_KINDS)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[BrokerEnv]:
    async for e in open_worker_env(request.param):
        yield e


def spy_step_many(gen: Generator) -> list[list[str]]:
    """Record the session ids of every `step_many` call."""
    calls: list[list[str]] = []
    real = gen.step_many

    def step_many(sessions: Sequence[Session], noise: Any = None) -> Any:
        calls.append([s.id for s in sessions])
        return real(sessions, noise)

    gen.step_many = step_many  # type: ignore[method-assign]
    return calls


async def test_two_sessions_are_batched_and_their_outputs_never_mixed(env: BrokerEnv) -> None:
    b = env.broker
    gen = make_generator()
    calls = spy_step_many(gen)
    async with running_worker(b, generator=gen) as _:
        a = await create(b, "a red circle moving left", seed=1, max_frames=33)
        c = await create(b, "a blue square moving up", seed=2, max_frames=33)
        out_a, out_c = Output(b, a), Output(b, c)
        await out_a.until_event("ended")
        await out_c.until_event("ended")
        init_a, init_c = await b.get_init_segment(a), await b.get_init_segment(c)

    assert any(set(call) == {a, c} for call in calls), calls  # one forward for both
    assert all(len(call) <= 2 for call in calls)
    assert init_a is not None and init_c is not None
    dec_a = np.stack([f.image for f in decode_session(init_a, out_a)])
    dec_c = np.stack([f.image for f in decode_session(init_c, out_c)])
    ref_a = encoded_reference(reference_frames("a red circle moving left", 1, 33), [9, 12, 12])
    ref_c = encoded_reference(reference_frames("a blue square moving up", 2, 33), [9, 12, 12])
    # each stream is its own session's video (batched = alone, to rounding), never the other's
    assert mean_abs(dec_a, ref_a) < 1.0 < 10 < mean_abs(dec_a, ref_c)
    assert mean_abs(dec_c, ref_c) < 1.0 < 10 < mean_abs(dec_c, ref_a)
    for out in (out_a, out_c):
        assert [ch["index"] for ch in out.events("chunk")] == [0, 1, 2]
        assert out.events("ended")[-1] == {"type": "ended", "reason": "completed", "frames": 33}


async def test_capacity_is_respected_and_a_queued_session_starts_when_one_ends(env: BrokerEnv) -> None:
    b = env.broker
    async with running_worker(b, worker_settings(max_sessions=2)) as (w, _):
        s1, s2, s3 = [await create(b, f"prompt {i}", seed=i) for i in range(3)]
        outs = {sid: Output(b, sid) for sid in (s1, s2, s3)}
        await outs[s1].until_event("chunk")
        await outs[s2].until_event("chunk")
        await asyncio.sleep(0.5)
        await outs[s3].poll()
        rec3 = await b.get_session(s3)
        assert rec3 is not None and rec3.state == "queued" and await b.queue_position(s3) == 0
        assert outs[s3].events() == [] and len(w.streams) == 2
        workers = await b.list_workers()
        assert [wi.id for wi in workers] == [w.worker_id]
        assert workers[0].capacity == 2 and sorted(workers[0].active_sessions) == sorted([s1, s2])

        await b.send_control(s1, {"type": "stop"})
        await outs[s1].until_event("ended")
        await outs[s3].until_event("chunk")
        assert len(w.streams) <= 2
        for sid in (s2, s3):
            await b.send_control(sid, {"type": "stop"})
            await outs[sid].until_event("ended")
    assert outs[s1].events("ended")[-1]["reason"] == "stopped"
    assert outs[s3].types()[0] == "started"


def inject_failure(gen: Generator, marker: str) -> None:
    """Sessions whose prompt contains ``marker`` break for good the first time they are planned
    in a batch with another session (so the failure always hits a shared batch)."""
    real_open, real_step_many = gen.open, gen.step_many
    state = {"batch": 0}

    def step_many(sessions: Sequence[Session], noise: Any = None) -> Any:
        state["batch"] = len(sessions)
        return real_step_many(sessions, noise)

    def open_(prompt: str, *args: Any, **kwargs: Any) -> Session:
        session = real_open(prompt, *args, **kwargs)
        if marker in prompt:
            real_begin = session.begin_chunk
            broken = {"yes": False}

            def begin_chunk(noise: Any) -> Any:
                broken["yes"] = broken["yes"] or state["batch"] > 1
                if broken["yes"]:
                    raise RuntimeError("injected failure")
                return real_begin(noise)

            session.begin_chunk = begin_chunk  # type: ignore[method-assign]
        return session

    gen.open = open_  # type: ignore[method-assign]
    gen.step_many = step_many  # type: ignore[method-assign]


async def test_a_failing_session_fails_alone(env: BrokerEnv) -> None:
    b = env.broker
    gen = make_generator()
    calls = spy_step_many(gen)
    inject_failure(gen, "boom")
    async with running_worker(b, generator=gen) as (w, _):
        bad = await create(b, "boom goes the session", seed=5)
        good = await create(b, "a red circle moving left", seed=6, max_frames=45)
        out_bad, out_good = Output(b, bad), Output(b, good)
        await out_bad.until_event("ended")
        await out_good.until_event("ended")
        init = await b.get_init_segment(good)
        await wait_for(lambda: not w.streams, 10, "sessions released")

    err = out_bad.events("error")
    assert len(err) == 1 and err[0]["code"] == "generation_failed" and err[0]["retryable"] is False
    assert out_bad.types()[-2:] == ["error", "ended"]
    bad_chunks = out_bad.events("chunk")
    frames = bad_chunks[-1]["first_frame"] + bad_chunks[-1]["frames"] if bad_chunks else 0
    assert out_bad.events("ended")[-1] == {"type": "ended", "reason": "failed", "frames": frames}
    rec = await b.get_session(bad)
    assert rec is not None and rec.state == "failed" and rec.error_code == "generation_failed"

    # the good session was batched with the failing one and is unaffected: all its chunks, and
    # exactly the frames it would have produced alone
    assert any(set(c) == {bad, good} for c in calls)
    assert [c["index"] for c in out_good.events("chunk")] == [0, 1, 2, 3]  # no chunk lost
    assert out_good.events("error") == []
    assert out_good.events("ended")[-1] == {"type": "ended", "reason": "completed", "frames": 45}
    assert init is not None
    decoded = decode_session(init, out_good)
    assert [f.time for f in decoded] == [Fraction(i, FPS) for i in range(45)]
    ref = encoded_reference(reference_frames("a red circle moving left", 6, 45), [9, 12, 12, 12])
    assert mean_abs(np.stack([f.image for f in decoded]), ref) < 1.0


def corrupt_frames(gen: Generator, marker: str) -> None:
    """Sessions whose prompt contains ``marker`` hand float frames to the encoder (it refuses)."""
    real_open = gen.open

    def open_(prompt: str, *args: Any, **kwargs: Any) -> Session:
        session = real_open(prompt, *args, **kwargs)
        if marker in prompt:
            real_finish = session.finish_chunk

            def finish_chunk(*args: Any, **kwargs: Any) -> Any:
                chunk = real_finish(*args, **kwargs)
                return dataclasses.replace(chunk, frames=chunk.frames.astype(np.float32))

            session.finish_chunk = finish_chunk  # type: ignore[method-assign]
        return session

    gen.open = open_  # type: ignore[method-assign]


async def test_an_encoding_failure_fails_only_that_session(env: BrokerEnv) -> None:
    b = env.broker
    gen = make_generator()
    corrupt_frames(gen, "garbled")
    async with running_worker(b, generator=gen) as (w, _):
        bad = await create(b, "garbled frames", seed=5)
        good = await create(b, "a red circle moving left", seed=6, max_frames=33)
        out_bad, out_good = Output(b, bad), Output(b, good)
        await out_bad.until_event("ended")
        await out_good.until_event("ended")
        await wait_for(lambda: not w.streams, 10, "sessions released")
    assert out_bad.events("chunk") == [] and out_bad.media() == []
    (err,) = out_bad.events("error")
    assert err["code"] == "encoding_failed" and err["retryable"] is False
    assert out_bad.events("ended") == [{"type": "ended", "reason": "failed", "frames": 0}]
    rec = await b.get_session(bad)
    assert rec is not None and rec.state == "failed" and rec.error_code == "encoding_failed"
    assert out_good.events("error") == []
    assert out_good.events("ended") == [{"type": "ended", "reason": "completed", "frames": 33}]
