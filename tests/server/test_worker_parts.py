"""Worker parts: control validation, snapshot envelope, batch failure isolation, metrics,
structured logs and the `rollcast worker` command."""

from __future__ import annotations

import argparse
import io
import json
import logging
from typing import Any

import pytest
from worker_env import Output, create, make_generator, running_worker, worker_settings

from engine.generator import Generator
from server.broker import MemoryBroker
from server.logs import JsonFormatter, TextFormatter, prompt_preview, setup_logging
from server.metrics import REGISTRY
from server.worker.control import InvalidControl, Pause, SetPrompt, SetSeed, Stop, parse_control
from server.worker.engine_thread import step_isolated
from server.worker.snapshot_envelope import WorkerSnapshot

# -- control messages ---------------------------------------------------------------------------


def test_valid_control_messages_parse() -> None:
    msg = parse_control(
        {"type": "set_prompt", "prompt": "a cat", "transition": "blend", "over_chunks": 3}, 100
    )
    assert msg == SetPrompt(type="set_prompt", prompt="a cat", transition="blend", over_chunks=3)
    assert parse_control({"type": "set_prompt", "prompt": "a cat"}, 100) == SetPrompt(
        type="set_prompt", prompt="a cat"
    )
    assert parse_control({"type": "set_seed", "seed": 0}, 100) == SetSeed(type="set_seed", seed=0)
    assert isinstance(parse_control({"type": "pause", "request_id": "r1"}, 100), Pause)  # extra keys ignored
    assert parse_control({"type": "stop"}, 100) == Stop(type="stop", reason="stopped")
    assert parse_control({"type": "stop", "reason": "deleted"}, 100) == Stop(type="stop", reason="deleted")


@pytest.mark.parametrize(
    "raw",
    [
        "pause",
        ["pause"],
        {},
        {"type": "rewind"},
        {"type": "set_prompt"},
        {"type": "set_prompt", "prompt": ""},
        {"type": "set_prompt", "prompt": "   "},
        {"type": "set_prompt", "prompt": "x" * 101},
        {"type": "set_prompt", "prompt": 5},
        {"type": "set_prompt", "prompt": "a", "transition": "fade"},
        {"type": "set_prompt", "prompt": "a", "over_chunks": 0},
        {"type": "set_prompt", "prompt": "a", "over_chunks": 17},
        {"type": "set_prompt", "prompt": "a", "over_chunks": True},
        {"type": "set_seed"},
        {"type": "set_seed", "seed": -1},
        {"type": "set_seed", "seed": 2**31},
        {"type": "set_seed", "seed": "7"},
        {"type": "set_seed", "seed": 1.5},
        {"type": "stop", "reason": "completed"},
    ],
)
def test_invalid_control_messages_are_rejected(raw: Any) -> None:
    with pytest.raises(InvalidControl):
        parse_control(raw, 100)


# -- snapshot envelope --------------------------------------------------------------------------


def test_worker_snapshot_round_trip_and_rejects_garbage() -> None:
    snap = WorkerSnapshot(b"\x00engine-bytes\xff", "1700000000000-5", {"chunk_index": 4, "frame_index": 45})
    back = WorkerSnapshot.from_bytes(snap.to_bytes())
    assert back == snap
    with pytest.raises(ValueError):
        WorkerSnapshot.from_bytes(b"not a snapshot at all")
    bad_version = b"RCWS" + (13).to_bytes(4, "big") + b'{"version":9}'
    with pytest.raises(ValueError):
        WorkerSnapshot.from_bytes(bad_version)


# -- failure isolation in one engine call --------------------------------------------------------


def test_step_isolated_fails_only_the_broken_session_and_keeps_the_others_exact() -> None:
    gen: Generator = make_generator()
    a, bad, c = (gen.open(p, seed=i) for i, p in enumerate(["a cat", "a dog", "a fish"]))

    def broken(noise: Any) -> Any:
        raise RuntimeError("boom")

    bad.begin_chunk = broken  # type: ignore[method-assign]
    results = step_isolated(gen, [a, bad, c])
    assert isinstance(results[1], RuntimeError)
    alone = make_generator()
    for session, result, (prompt, seed) in ((a, results[0], ("a cat", 0)), (c, results[2], ("a fish", 2))):
        expected = alone.open(prompt, seed=seed).step()
        assert result.index == 0 and session.chunk_index == 1  # type: ignore[union-attr]
        assert (result.frames == expected.frames).all()  # type: ignore[union-attr]


# -- metrics ------------------------------------------------------------------------------------


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_metrics_are_recorded_for_a_session() -> None:
    b = MemoryBroker()
    before = {
        "frames": _sample("rollcast_frames_generated_total"),
        "steps": _sample("rollcast_denoise_steps_total"),
        "ttff": _sample("rollcast_time_to_first_frame_seconds_count"),
        "wait": _sample("rollcast_queue_wait_seconds_count"),
        "completed": _sample("rollcast_sessions_total", {"outcome": "completed"}),
        "encode": _sample("rollcast_chunk_generation_seconds_count", {"stage": "encode"}),
    }
    async with running_worker(b, worker_settings(max_sessions=3)) as _:
        assert _sample("rollcast_worker_capacity") == 3
        sid = await create(b, max_frames=21)
        await Output(b, sid).until_event("ended")
    assert _sample("rollcast_frames_generated_total") - before["frames"] == 21
    assert _sample("rollcast_denoise_steps_total") - before["steps"] == 2 * 4
    assert _sample("rollcast_time_to_first_frame_seconds_count") - before["ttff"] == 1
    assert _sample("rollcast_queue_wait_seconds_count") - before["wait"] == 1
    assert _sample("rollcast_sessions_total", {"outcome": "completed"}) - before["completed"] == 1
    assert _sample("rollcast_chunk_generation_seconds_count", {"stage": "encode"}) - before["encode"] == 2
    assert _sample("rollcast_gpu_memory_bytes", {"kind": "allocated"}) == 0  # CPU


async def test_heartbeat_advertises_the_worker_and_draining() -> None:
    b = MemoryBroker()
    async with running_worker(b, worker_settings(max_sessions=3), worker_id="w-hb") as (w, task):
        (info,) = await b.list_workers()
        assert (info.id, info.capacity, info.draining, info.preset, info.device) == (
            "w-hb",
            3,
            False,
            "test",
            "cpu",
        )
        assert w.ready
        sid = await create(b)  # unbounded: handed back on drain
        await Output(b, sid).until_event("chunk")
        w.request_drain()
        assert not w.ready
        await task
    assert await b.list_workers() == []
    rec = await b.get_session(sid)
    assert rec is not None and rec.state == "running"


class _SlowHeartbeatBroker(MemoryBroker):
    """A broker whose heartbeat write lands 0.3 s after it is sent, even if the sender stops
    waiting for it: a request already on the wire to Redis is not undone by a cancel."""

    async def heartbeat(self, info: Any, ttl_s: float) -> None:
        import asyncio

        async def land() -> None:
            await asyncio.sleep(0.3)
            await MemoryBroker.heartbeat(self, info, ttl_s)

        await asyncio.shield(asyncio.ensure_future(land()))


async def test_a_drained_worker_is_gone_even_when_its_last_heartbeat_is_slow() -> None:
    """Heartbeats run while the worker drains; one can still be on its way when the drain is
    over. The worker must let it land before removing its record, or it announces a stopped
    worker again for a whole TTL (seen once in CI with Redis)."""
    import asyncio

    b = _SlowHeartbeatBroker()
    settings = worker_settings(heartbeat_interval_s=0.05)
    async with running_worker(b, settings, worker_id="w-slow") as (w, task):
        w.request_drain()
        await task
    await asyncio.sleep(0.5)  # every write sent before the worker stopped has landed
    assert await b.list_workers() == []


# -- structured logs ----------------------------------------------------------------------------


def _record(msg: str, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("rollcast.worker", logging.INFO, __file__, 1, msg, None, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_and_text_log_lines_carry_the_structured_fields() -> None:
    rec = _record("session started", event="started", session_id="s_1", worker_id="w 1")
    line = json.loads(JsonFormatter().format(rec))
    assert (
        line["msg"] == "session started" and line["level"] == "INFO" and line["logger"] == "rollcast.worker"
    )
    assert (line["event"], line["session_id"], line["worker_id"]) == ("started", "s_1", "w 1")
    text = TextFormatter().format(rec)
    assert "INFO rollcast.worker: session started" in text
    assert "event=started session_id=s_1" in text and 'worker_id="w 1"' in text


def test_setup_logging_uses_the_settings_format_and_level() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging(worker_settings(log_format="json", log_level="WARNING"), stream=stream)
        logging.getLogger("rollcast.test").info("hidden")
        logging.getLogger("rollcast.test").warning("shown", extra={"session_id": "s_2"})
        lines = [json.loads(x) for x in stream.getvalue().splitlines()]
        assert [(x["msg"], x["session_id"]) for x in lines] == [("shown", "s_2")]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_prompt_preview_keeps_80_characters() -> None:
    assert prompt_preview("short") == "short"
    long = "x" * 200
    assert prompt_preview(long) == "x" * 80 + "…"


# -- the command --------------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    from server.commands import worker as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_command_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.commands import worker as cmd

    monkeypatch.setenv("ROLLCAST_MAX_SESSIONS", "5")
    monkeypatch.setenv("ROLLCAST_PRESET", "tiny")
    from server.commands.options import settings_from

    args = _parse("--preset", "test", "--redis-url", "redis://h:1/2", "--heartbeat-ttl", "3")
    s = settings_from(args, cmd.OPTIONS)
    assert (s.preset, s.redis_url, s.heartbeat_ttl_s, s.max_sessions) == ("test", "redis://h:1/2", 3.0, 5)


def test_command_requires_redis(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from server.commands import worker as cmd

    monkeypatch.delenv("ROLLCAST_REDIS_URL", raising=False)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        assert cmd.run(_parse("--preset", "test")) == 2
        assert cmd.run(_parse("--redis-url", "memory://")) == 2
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert "Redis URL is required" in capsys.readouterr().err


@pytest.mark.redis
@pytest.mark.timeout(180)
async def test_worker_process_serves_a_session_exposes_metrics_and_drains_on_sigterm() -> None:
    import asyncio
    import os
    import signal
    import socket
    import sys
    import urllib.request
    import uuid
    from pathlib import Path

    from broker_env import REDIS_URL, delete_prefix
    from worker_env import wait_for

    from server.broker import BrokerConfig, RedisBroker

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prefix = f"rollcast-test:{uuid.uuid4().hex[:12]}"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ROLLCAST_LOG_FORMAT": "json", "ROLLCAST_LOG_LEVEL": "INFO"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "worker", "--redis-url", REDIS_URL, "--key-prefix", prefix,
        "--preset", "test", "--torch-threads", "1", "--metrics-port", str(port), "--worker-id", "w-proc",
        "--heartbeat-interval", "0.2", cwd=root, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    broker = RedisBroker.from_url(REDIS_URL, BrokerConfig(prefix=prefix))
    try:
        await wait_for(lambda: _has_worker(broker), 120, "worker process heartbeat")
        sid = await create(broker, max_frames=21)
        ended = await Output(broker, sid).until_event("ended", timeout=60)
        assert ended == {"type": "ended", "reason": "completed", "frames": 21}
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        )
        assert "rollcast_frames_generated_total 21.0" in body
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert await broker.list_workers() == []
        logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
        events = {(x.get("event"), x.get("session_id")) for x in logs}
        assert ("started", sid) in events and ("ended", sid) in events and ("draining", None) in events
        assert all(x.get("worker_id") == "w-proc" for x in logs if x.get("event") in ("started", "ended"))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await broker.close()
        await delete_prefix(prefix)


async def _has_worker(broker: Any) -> bool:
    return bool(await broker.list_workers())
