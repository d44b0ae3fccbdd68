"""Worker, one session at a time: the event/media stream, trimming, JPEG, live control, DELETE.

Real engine ("test" preset), real encoder and decoder, both brokers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from fractions import Fraction

import numpy as np
import pytest
from broker_env import BROKER_KINDS, BrokerEnv
from worker_env import (
    FPS,
    HEIGHT,
    WIDTH,
    Output,
    create,
    decode_jpegs,
    decode_session,
    encoded_reference,
    mean_abs,
    open_worker_env,
    reference_frames,
    running_worker,
    wait_for,
    worker_settings,
)

from server.media import JPEGEncoder, MediaKind, decode_jpeg

PROMPT = "a red circle moving left"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=BROKER_KINDS)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[BrokerEnv]:
    async for e in open_worker_env(request.param):
        yield e


def chunk_then_media(out: Output) -> None:
    """Every `chunk` event is immediately followed by its media, in chunk order."""
    entries = out.entries
    for i, e in enumerate(entries):
        if e.kind == "event" and e.event["type"] == "chunk":  # type: ignore[index]
            ev = e.event
            assert ev is not None
            nxt = entries[i + 1]
            assert nxt.kind == "media"


async def test_session_streams_started_chunks_and_decodable_fragments(env: BrokerEnv) -> None:
    b = env.broker
    async with running_worker(b) as (w, _):
        sid = await create(b, "a red circle moving left", seed=11, max_frames=30)
        out = Output(b, sid)
        await out.until_event("ended")
        init = await b.get_init_segment(sid)
        record = await b.get_session(sid)

    types = out.types()
    assert types == ["started", "chunk", "media", "chunk", "media", "chunk", "media", "ended"]
    started = out.events("started")[0]
    assert (started["width"], started["height"], started["fps"], started["format"]) == (
        WIDTH,
        HEIGHT,
        FPS,
        "fmp4",
    )
    assert started["codec"].startswith("avc1.") and started["codec"] in started["mime"]

    chunks = out.events("chunk")
    # max_frames=30: chunks of 9 and 12 frames, the last one trimmed from 12 to 9
    assert [(c["index"], c["first_frame"], c["frames"]) for c in chunks] == [
        (0, 0, 9),
        (1, 9, 12),
        (2, 21, 9),
    ]
    for c in chunks:
        assert set(c["timings"]) == {"denoise_ms", "decode_ms", "encode_ms"}
        assert all(v >= 0 for v in c["timings"].values()) and c["steps"] == 4 and c["prompt_revision"] == 0
    media = out.media()
    assert [(m.kind, m.chunk_index, m.first_frame, m.frame_count) for m in media] == [
        (MediaKind.FRAGMENT, 0, 0, 9),
        (MediaKind.FRAGMENT, 1, 9, 12),
        (MediaKind.FRAGMENT, 2, 21, 9),
    ]
    assert out.events("ended") == [{"type": "ended", "reason": "completed", "frames": 30}]

    assert init is not None
    frames = decode_session(init, out)
    assert len(frames) == 30
    assert all(f.image.shape == (HEIGHT, WIDTH, 3) for f in frames)
    assert [f.time for f in frames] == [Fraction(i, FPS) for i in range(30)]  # contiguous
    # every fragment decodes on its own after the init segment
    from server.media import decode_fmp4

    assert len(decode_fmp4(init, [media[1].payload])) == 12
    # the video is the engine's output for this prompt and seed: the same as encoding the frames
    # of a session stepped alone (up to rounding), and far from another seed's
    decoded = np.stack([f.image for f in frames])
    ref = encoded_reference(reference_frames("a red circle moving left", 11, 30), [9, 12, 9])
    other = encoded_reference(reference_frames("a red circle moving left", 12, 30), [9, 12, 9])
    assert mean_abs(decoded, ref) < 1.0 < 10 < mean_abs(decoded, other)

    assert record is not None
    assert record.state == "ended" and record.end_reason == "completed"
    assert (record.frames_generated, record.chunks_generated) == (30, 3)
    assert (record.width, record.height, record.fps, record.codec) == (WIDTH, HEIGHT, FPS, started["codec"])
    assert record.worker_id == w.worker_id and record.started_at is not None


async def test_jpeg_mode_and_server_wide_frame_limit(env: BrokerEnv) -> None:
    b = env.broker
    async with running_worker(b, worker_settings(max_frames_limit=10)) as _:
        sid = await create(b, PROMPT, seed=3, fmt="jpeg")  # unbounded request, capped by the server at 10
        out = Output(b, sid)
        await out.until_event("ended")
        init = await b.get_init_segment(sid)

    started = out.events("started")[0]
    assert started["format"] == "jpeg" and started["mime"] == "image/jpeg" and "codec" not in started
    assert init is None
    assert [(c["index"], c["first_frame"], c["frames"]) for c in out.events("chunk")] == [
        (0, 0, 9),
        (1, 9, 1),
    ]
    media = out.media()
    assert [(m.kind, m.chunk_index, m.first_frame, m.frame_count) for m in media] == [
        (MediaKind.JPEG, 0 if i < 9 else 1, i, 1) for i in range(10)
    ]
    # chunk event, then its 9 (resp. 1) JPEG messages
    assert out.types() == ["started", "chunk", *["media"] * 9, "chunk", "media", "ended"]
    images = decode_jpegs(out)
    assert all(img.shape == (HEIGHT, WIDTH, 3) for img in images)
    decoded = np.stack(images)
    ref = np.stack([decode_jpeg(j) for j in JPEGEncoder(85).encode_frames(reference_frames(PROMPT, 3, 10))])
    other = np.stack([decode_jpeg(j) for j in JPEGEncoder(85).encode_frames(reference_frames(PROMPT, 4, 10))])
    assert mean_abs(decoded, ref) < 1.0 < 10 < mean_abs(decoded, other)
    assert out.events("ended")[-1] == {"type": "ended", "reason": "completed", "frames": 10}


async def test_prompt_change_invalid_controls_and_stop(env: BrokerEnv) -> None:
    b = env.broker
    async with running_worker(b) as _:
        sid = await create(b, "first prompt")
        out = Output(b, sid)
        await out.until_event("chunk")
        sent_after = len(out.events("chunk"))
        await b.send_control(sid, {"type": "set_prompt", "prompt": "second prompt", "transition": "recache"})
        await b.send_control(sid, {"type": "set_prompt", "prompt": ""})
        await b.send_control(sid, {"type": "set_prompt", "prompt": "x", "over_chunks": 17})
        await b.send_control(sid, {"type": "set_prompt", "prompt": "x" * 2001})
        await b.send_control(sid, {"type": "warp"})
        await b.send_control(sid, {"type": "set_seed", "seed": "7"})
        applied = await out.until_event("prompt_applied")
        await out.until(lambda o: len(o.events("chunk")) >= sent_after + 3, what="more chunks")
        record = await b.get_session(sid)
        await b.send_control(sid, {"type": "stop"})
        await out.until_event("ended")

    assert applied["prompt"] == "second prompt" and applied["revision"] == 1
    assert applied["transition"] == "recache"
    chunk = next(c for c in out.events("chunk") if c["index"] == applied["chunk"])
    assert applied["frame"] == chunk["first_frame"] and chunk["prompt_revision"] == 1
    assert applied["chunk"] >= 1
    # prompt_applied comes right before its chunk's event
    types = out.types()
    i = types.index("prompt_applied")
    assert types[i + 1] == "chunk" and out.entries[i + 1].event["index"] == applied["chunk"]  # type: ignore[index]
    earlier = [c for c in out.events("chunk") if c["index"] < applied["chunk"]]
    later = [c for c in out.events("chunk") if c["index"] > applied["chunk"]]
    assert all(c["prompt_revision"] == 0 for c in earlier) and all(c["prompt_revision"] == 1 for c in later)
    errors = out.events("error")
    assert len(errors) == 5 and all(
        e["code"] == "invalid_message" and e["retryable"] is False for e in errors
    )
    assert record is not None and record.prompt == "second prompt"
    assert out.events("ended")[-1]["reason"] == "stopped"
    last = out.events("chunk")[-1]
    assert out.events("ended")[-1]["frames"] == last["first_frame"] + last["frames"]
    final = await b.get_session(sid)
    assert final is not None and final.state == "ended" and final.end_reason == "stopped"


async def test_pause_and_resume(env: BrokerEnv) -> None:
    b = env.broker
    async with running_worker(b) as _:
        sid = await create(b)
        out = Output(b, sid)
        await out.until_event("chunk")
        await b.send_control(sid, {"type": "pause"})
        paused = await out.until_event("paused")
        await wait_for(lambda: _state(b, sid, "paused"), 10, "state paused")
        n_chunks = len(out.events("chunk"))
        await asyncio.sleep(0.6)
        await out.poll()
        assert len(out.events("chunk")) == n_chunks  # nothing generated while paused
        await b.send_control(sid, {"type": "pause"})  # already paused: ignored
        await b.send_control(sid, {"type": "resume"})
        resumed = await out.until_event("resumed")
        await out.until(lambda o: len(o.events("chunk")) > n_chunks, what="chunk after resume")
        assert await _state(b, sid, "running")
        await b.send_control(sid, {"type": "stop"})
        await out.until_event("ended")

    last_before = out.events("chunk")[n_chunks - 1]
    assert paused["frame"] == last_before["first_frame"] + last_before["frames"]
    assert resumed["frame"] == paused["frame"]
    assert out.events("chunk")[n_chunks]["first_frame"] == paused["frame"]  # no gap, no repeat
    assert len(out.events("paused")) == 1


async def _state(b: object, sid: str, state: str) -> bool:
    rec = await b.get_session(sid)  # type: ignore[attr-defined]
    return rec is not None and rec.state == state


async def test_session_ended_by_the_front_end_is_released(env: BrokerEnv) -> None:
    b = env.broker
    async with running_worker(b) as (w, _):
        sid = await create(b)
        out = Output(b, sid)
        await out.until_event("chunk")
        # what the API does on DELETE: end the session, publish `ended`
        assert await b.end_session(sid, "ended", "deleted")
        await b.publish_event(sid, {"type": "ended", "reason": "deleted", "frames": 0})
        await wait_for(lambda: not w.streams, 10, "worker released the session")
        await out.poll()
        settled = len(out.entries)
        await asyncio.sleep(0.4)
        await out.poll()

    assert len(out.entries) == settled  # the worker publishes nothing more
    assert out.types().count("ended") == 1  # the API's; the worker adds none
    after = out.types()[out.types().index("ended") + 1 :]
    assert after in ([], ["chunk", "media"])  # at most the chunk that was being published
    rec = await b.get_session(sid)
    assert rec is not None and rec.state == "ended" and rec.end_reason == "deleted"


async def test_front_end_stop_with_reason_deleted(env: BrokerEnv) -> None:
    # The API's DELETE of a session a worker already holds goes through the control stream.
    b = env.broker
    async with running_worker(b) as _:
        sid = await create(b)
        out = Output(b, sid)
        await out.until_event("chunk")
        await b.send_control(sid, {"type": "stop", "reason": "deleted"})
        ended = await out.until_event("ended")
    assert ended["reason"] == "deleted"
    rec = await b.get_session(sid)
    assert rec is not None and rec.state == "ended" and rec.end_reason == "deleted"
