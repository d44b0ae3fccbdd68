"""End to end: real processes, real Redis, real WebSockets, real H.264 decoded frame by frame.

Each test runs against both deployments: `rollcast api` + `rollcast worker` over Redis, and
`rollcast serve` (in-process broker).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from deployment import MAX_SESSIONS, Deployment, deployment
from viewer import Viewer, start

from engine.generator import Generator
from server.media import FMP4Encoder
from server.media.decode import decode_fmp4

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module", params=["redis", "serve"])
def dep(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    with deployment(request.param) as d:
        yield d


async def create(d: Deployment, prompt: str, **body: object) -> dict:
    async with httpx.AsyncClient(base_url=d.url, timeout=30) as http:
        r = await http.post("/v1/sessions", json={"prompt": prompt, **body})
        assert r.status_code == 201, r.text
        return r.json()


def chunk_events(v: Viewer) -> list[dict]:
    return v.of_type("chunk")


def assert_contiguous(v: Viewer, width: int, height: int) -> None:
    """Every frame has the stream's size; chunks and frames follow each other without gaps."""
    chunks = chunk_events(v)
    frags = v.fragments()
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert [(f.chunk_index, f.first_frame, f.frame_count) for f in frags] == [
        (c["index"], c["first_frame"], c["frames"]) for c in chunks
    ]
    for prev, cur in itertools.pairwise(chunks):
        assert cur["first_frame"] == prev["first_frame"] + prev["frames"]
    frames, times = v.decoded()
    assert len(frames) == sum(c["frames"] for c in chunks)
    assert all(f.shape == (height, width, 3) for f in frames)
    fps = v.of_type("started")[0]["fps"]
    assert [round(t * fps) for t in times] == list(range(len(frames)))


async def test_stream_prompt_change_and_delete(dep: Deployment) -> None:
    s = await create(dep, "a red circle moving left", seed=7)
    assert s["state"] == "queued" and s["stream_url"].endswith(f"/v1/sessions/{s['id']}/stream")
    v = Viewer(f"{dep.ws_url}/v1/sessions/{s['id']}/stream")
    task = start(v)
    await v.wait_for(lambda v: len(chunk_events(v)) >= 2)
    assert v.types[0] == "session"
    started = v.of_type("started")[0]
    assert started["codec"].startswith("avc1.") and started["width"] == 48 and started["height"] == 32
    await v.send({"type": "set_prompt", "prompt": "a blue square moving up", "transition": "cut"})
    await v.wait_for(lambda v: bool(v.of_type("prompt_applied")))
    applied = v.of_type("prompt_applied")[0]
    await v.wait_for(lambda v: any(c["index"] == applied["chunk"] for c in chunk_events(v)))
    applied_chunk = next(c for c in chunk_events(v) if c["index"] == applied["chunk"])
    assert applied["frame"] == applied_chunk["first_frame"] and applied["prompt"] == "a blue square moving up"
    await v.wait_for(lambda v: any(f.chunk_index == applied["chunk"] for f in v.fragments()))
    async with httpx.AsyncClient(base_url=dep.url) as http:
        r = await http.delete(f"/v1/sessions/{s['id']}")
        assert r.status_code == 200 and r.json()["state"] == "ended"
    await asyncio.wait_for(task, 60)
    assert v.types[-1] == "ended" and v.events[-1]["reason"] == "deleted"
    assert v.close_code == 1000
    # trailing chunk events whose media did not make it before the end are not part of the video
    v.events = [
        e for e in v.events if e["type"] != "chunk" or any(f.chunk_index == e["index"] for f in v.fragments())
    ]
    assert_contiguous(v, 48, 32)


async def test_sessions_are_isolated_and_queue_beyond_capacity(dep: Deployment) -> None:
    assert MAX_SESSIONS == 2
    # paced to real time, A and B run for seconds: C (created at once) must wait for a slot
    a = await create(dep, "a red circle", seed=11, max_frames=57)  # chunks of 9 + 4 x 12 frames
    b = await create(dep, "a white triangle bouncing", seed=12, max_frames=69)  # 9 + 5 x 12
    va, vb = (
        Viewer(f"{dep.ws_url}/v1/sessions/{a['id']}/stream"),
        Viewer(f"{dep.ws_url}/v1/sessions/{b['id']}/stream"),
    )
    ta, tb = start(va), start(vb)
    await va.wait_for(lambda v: bool(v.of_type("started")))
    await vb.wait_for(lambda v: bool(v.of_type("started")))
    c = await create(dep, "a green triangle", seed=13, max_frames=9)
    assert c["queue_position"] == 0
    vc = Viewer(f"{dep.ws_url}/v1/sessions/{c['id']}/stream")
    tc = start(vc)
    await vc.wait_for(lambda v: bool(v.of_type("queued")))
    assert vc.of_type("queued")[0]["position"] == 0
    await asyncio.wait_for(asyncio.gather(ta, tb, tc), 300)
    for v, frames in ((va, 57), (vb, 69), (vc, 9)):
        last = v.events[-1]
        assert (last["type"], last["reason"], last["frames"]) == ("ended", "completed", frames)
        assert_contiguous(v, 48, 32)
    # C started only after A or B ended
    async with httpx.AsyncClient(base_url=dep.url) as http:
        recs = {
            k: (await http.get(f"/v1/sessions/{s['id']}")).json() for k, s in (("a", a), ("b", b), ("c", c))
        }
    assert recs["c"]["started_at"] >= min(recs["a"]["ended_at"], recs["b"]["ended_at"]) - 0.05
    # each viewer got its own session's pictures: the same sessions generated and encoded here
    gen = Generator.from_preset("test")
    for v, prompt, seed in ((va, "a red circle", 11), (vb, "a white triangle bouncing", 12)):
        session = gen.open(prompt, seed=seed)
        with FMP4Encoder(48, 32, 16) as enc:
            fragments = [enc.encode_chunk(session.step().frames) for _ in range(2)]
            want = np.stack(decode_fmp4(enc.init_segment(), fragments)).astype(float)[:21]
        got = np.stack(v.decoded()[0][:21]).astype(float)
        other = vb if v is va else va
        wrong = np.stack(other.decoded()[0][:21]).astype(float)
        assert np.abs(got - want).mean() < 2.0 < np.abs(wrong - want).mean()


async def test_generation_is_paced_to_real_time(dep: Deployment) -> None:
    """Sessions run at most ~pace_lead_s (1 s) ahead of playback, not as fast as possible."""
    s = await create(dep, "a red circle moving left", seed=3, fps=16)
    v = Viewer(f"{dep.ws_url}/v1/sessions/{s['id']}/stream")
    task = start(v)
    await v.wait_for(lambda v: bool(v.fragments()), 120)
    t0 = time.monotonic()
    await asyncio.sleep(4.0)
    frames = sum(f.frame_count for f in v.fragments())
    elapsed = time.monotonic() - t0
    async with httpx.AsyncClient(base_url=dep.url) as http:
        await http.delete(f"/v1/sessions/{s['id']}")
    await asyncio.wait_for(task, 60)
    # playback position + 1 s lead + one 12-frame chunk in flight, with a little slack
    assert frames <= (elapsed + 1.0) * 16 + 12 + 2, frames
    assert frames >= (elapsed - 1.0) * 16, frames  # and it keeps up with real time


async def test_slow_viewer_neither_stalls_a_fast_one_nor_grows_memory(dep: Deployment) -> None:
    s = await create(dep, "a yellow square moving right", seed=21, fps=60)  # 0.2 s per chunk
    url = f"{dep.ws_url}/v1/sessions/{s['id']}/stream"
    fast = Viewer(url)
    tf = start(fast)
    await fast.wait_for(lambda v: len(chunk_events(v)) >= 3, 120)
    t0, n0 = time.monotonic(), len(chunk_events(fast))
    await fast.wait_for(lambda v: len(chunk_events(v)) >= n0 + 3, 120)
    chunk_period = (time.monotonic() - t0) / 3
    # two messages per chunk: a tenth of the rate, through a small receive window
    slow = Viewer(url, delay_s=10 * chunk_period / 2, receive_buffer=8192)
    ts = start(slow)
    await slow.wait_for(lambda v: len(v.fragments()) >= 2, 300)
    rss_mid = dep.api.rss_bytes()
    # Socket buffers (~100 KB here) hold the first ~50 small chunks; then the relay drops.
    await slow.wait_for(lambda v: has_gap([f.chunk_index for f in v.fragments()]), 600)
    rss_end = dep.api.rss_bytes()
    async with httpx.AsyncClient(base_url=dep.url) as http:
        await http.delete(f"/v1/sessions/{s['id']}")
        metrics = (await http.get("/metrics")).text
    await asyncio.wait_for(tf, 60)
    ts.cancel()
    # the fast viewer saw every chunk, in order, complete
    indexes = [f.chunk_index for f in fast.fragments()]
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes)))
    # the slow one got whole fragments only, skipping some (drops), never going backwards
    slow_idx = [f.chunk_index for f in slow.fragments()]
    assert slow_idx == sorted(set(slow_idx)) and len(slow_idx) >= 2
    assert has_gap(slow_idx)
    assert len(slow_idx) < len(indexes)
    dropped = re.search(r'rollcast_frames_dropped_total\{reason="slow_viewer"\} (\S+)', metrics)
    assert dropped and float(dropped.group(1)) > 0
    assert rss_end - rss_mid < 40 * 2**20, f"API memory grew {(rss_end - rss_mid) / 2**20:.1f} MiB"


def has_gap(indexes: list[int]) -> bool:
    return any(b - a > 1 for a, b in itertools.pairwise(indexes))


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = (
        "^" + re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{[^}]*\})?") + r" (\S+)$"
    )
    values = [float(m) for m in re.findall(pattern, text, flags=re.MULTILINE)]
    family = re.sub(r"_(count|sum|bucket)$", "", name)
    assert values or f"# TYPE {family} " in text, f"{name} not exported"
    return sum(values)  # a labelled family with no samples yet counts as 0


async def settled(http: httpx.AsyncClient, url: str) -> str:
    """Worker metrics once no earlier test's session is still generating: the frame counter
    holds still over 1.5 s (a paced session publishes a chunk every 0.75 s)."""
    text = (await http.get(url)).text
    for _ in range(40):
        await asyncio.sleep(1.5)
        again = (await http.get(url)).text
        if metric(again, "rollcast_frames_generated_total") == metric(
            text, "rollcast_frames_generated_total"
        ):
            return again
        text = again
    raise AssertionError("the worker kept generating for 60 s after the previous test")


async def test_metrics_move(dep: Deployment) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        before_w = await settled(http, dep.worker_metrics)
        before_a = (await http.get(f"{dep.url}/metrics")).text
        s = await create(dep, "two white circles", seed=5, max_frames=21)
        v = Viewer(f"{dep.ws_url}/v1/sessions/{s['id']}/stream")
        task = start(v)
        await v.wait_for(lambda v: bool(v.fragments()))
        during = (await http.get(f"{dep.url}/metrics")).text
        await asyncio.wait_for(task, 120)
        # gauges refresh every second, later on a loaded machine: read until they have settled
        for _ in range(30):
            await asyncio.sleep(0.5)
            after_w = (await http.get(dep.worker_metrics)).text
            after_a = (await http.get(f"{dep.url}/metrics")).text
            if (
                metric(after_a, "rollcast_viewers") == 0
                and metric(after_w, "rollcast_frames_generated_total")
                - metric(before_w, "rollcast_frames_generated_total")
                >= 21
            ):
                break
    grew = [
        "rollcast_frames_generated_total",
        "rollcast_time_to_first_frame_seconds_count",
        "rollcast_chunk_generation_seconds_count",
        "rollcast_denoise_steps_total",
        "rollcast_queue_wait_seconds_count",
    ]
    for name in grew:
        assert metric(after_w, name) > metric(before_w, name), name
    assert (
        metric(after_w, "rollcast_frames_generated_total")
        - metric(before_w, "rollcast_frames_generated_total")
        == 21
    )
    assert metric(after_a, "rollcast_sessions_total") > metric(before_a, "rollcast_sessions_total") or metric(
        after_w, "rollcast_sessions_total"
    ) > metric(before_w, "rollcast_sessions_total")
    assert metric(during, "rollcast_viewers") >= 1 and metric(after_a, "rollcast_viewers") == 0
    assert metric(during, "rollcast_sessions_active") >= 1
    assert metric(after_a, "rollcast_workers_ready") >= 1
    assert metric(after_a, "rollcast_relay_latency_seconds_count") > metric(
        before_a, "rollcast_relay_latency_seconds_count"
    )
    for name in (
        "rollcast_sessions_queued",
        "rollcast_viewer_send_queue_depth_count",
        "rollcast_frames_dropped_total",
    ):
        metric(after_a, name)  # exported
