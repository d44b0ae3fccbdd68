"""`rollcast api` / `rollcast serve`: the listening rule (no keys => loopback only unless
--allow-insecure), the Redis requirement of `api`, and real processes: readiness, SIGTERM
draining (/readyz 503 during the grace period, exit status 0), the serve banner."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from api_env import make_settings
from broker_env import REDIS_URL, delete_prefix

from server.api.auth import insecure_listen_error, is_loopback
from server.broker import BrokerConfig, RedisBroker, WorkerInfo
from server.cli import main
from server.commands.serve import display_url
from server.settings import ApiKey

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROLLCAST_API_KEYS", "ROLLCAST_ALLOW_INSECURE", "ROLLCAST_REDIS_URL", "ROLLCAST_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_listening_rule() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host) and insecure_listen_error(make_settings(host=host)) is None
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.org"):
        assert not is_loopback(host)
        problem = insecure_listen_error(make_settings(host=host))
        assert problem is not None and "--allow-insecure" in problem and host in problem
        assert insecure_listen_error(make_settings(host=host, allow_insecure=True)) is None
        keyed = make_settings(host=host, api_keys={"sk-1": ApiKey(name="a")})
        assert insecure_listen_error(keyed) is None


def test_commands_refuse_to_start_insecurely(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api", "--host", "0.0.0.0", "--redis-url", REDIS_URL]) == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--allow-insecure" in capsys.readouterr().err


def test_api_needs_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api"]) == 2
    err = capsys.readouterr().err
    assert "Redis URL is required" in err and "rollcast serve" in err
    assert main(["api", "--redis-url", "memory://"]) == 2


def test_display_url() -> None:
    assert display_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert display_url("::", 81) == "http://[::1]:81"
    assert display_url("fe80::1", 81) == "http://[fe80::1]:81"
    assert display_url("127.0.0.1", 9) == "http://127.0.0.1:9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], **env: str) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCAST_")}
    full |= {"ROLLCAST_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        cwd=REPO,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                await c.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@pytest.mark.redis
async def test_api_process_readiness_and_sigterm_drain() -> None:
    port, prefix = free_port(), f"rollcast-test:{uuid.uuid4().hex[:12]}"
    base = f"http://127.0.0.1:{port}"
    proc = spawn(
        ["api", "--port", str(port), "--redis-url", REDIS_URL, "--key-prefix", prefix],
        ROLLCAST_SHUTDOWN_GRACE_S="1.5",
    )
    broker = RedisBroker.from_url(REDIS_URL, BrokerConfig(prefix=prefix))
    try:
        await wait_http(f"{base}/healthz", proc)
        async with httpx.AsyncClient(base_url=base) as c:
            assert (await c.get("/readyz")).status_code == 503
            await broker.heartbeat(WorkerInfo(id="w-test"), ttl_s=30)
            assert (await c.get("/readyz")).status_code == 200
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            r = await c.get("/readyz")
            assert r.status_code == 503 and "draining" in r.json()["error"]["message"]
            assert (await c.get("/healthz")).status_code == 200
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == 0
        assert 1.4 <= time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await broker.close()
        await delete_prefix(prefix)


async def test_serve_process_prints_its_url_and_exits_cleanly_on_sigterm() -> None:
    port = free_port()
    proc = spawn(["serve", "--port", str(port), "--preset", "test"], ROLLCAST_TORCH_THREADS="1")
    try:
        assert proc.stdout is not None
        banner = f"Rollcast is running at http://127.0.0.1:{port}"

        def read_banner() -> list[str]:
            lines: list[str] = []
            while proc.stdout is not None and (line := proc.stdout.readline()):
                lines.append(line.strip())
                if line.startswith("Rollcast is running"):
                    break
            return lines

        lines = await asyncio.wait_for(asyncio.to_thread(read_banner), 90)
        assert lines and lines[-1] == banner, lines
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            assert (await c.get("/readyz")).json()["workers_ready"] == 1
            r = await c.get("/")
            assert r.status_code == 200 and "text/html" in r.headers["content-type"]
            assert (await c.get("/v1/models")).json()["models"][0]["id"] == "test"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
