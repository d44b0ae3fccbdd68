"""Real Rollcast deployments as subprocesses for the end-to-end tests.

- "redis": `rollcast api` and `rollcast worker` as separate processes sharing a real Redis
  (db 15, a unique key prefix, removed afterwards);
- "serve": `rollcast serve`, one process with the in-process broker.

Both run the `test` preset (seeded random weights) with room for 2 concurrent sessions.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("ROLLCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MAX_SESSIONS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return f"--- {self.name} ---\n" + self.log.read_text(errors="replace")[-3000:]

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class Deployment:
    kind: str
    url: str  # base URL of the front end
    api: Process  # the process serving HTTP (the whole server for "serve")
    worker_metrics: str  # URL of the /metrics that holds the worker's metrics
    processes: list[Process] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # the processes' environment

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def logs(self) -> str:
        return "\n".join(p.logs() for p in self.processes)


def _spawn(name: str, args: list[str], env: dict[str, str], tmp: Path) -> Process:
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Process(name, proc, log)


def _wait_ready(url: str, processes: list[Process], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in processes:
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.proc.returncode}\n{p.logs()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("deployment never became ready\n" + "\n".join(p.logs() for p in processes))


@contextlib.contextmanager
def deployment(kind: str, env_overrides: dict[str, str] | None = None) -> Iterator[Deployment]:
    """Start a deployment ("redis" or "serve"); `env_overrides` change ROLLCAST_* settings."""
    tmp = Path(tempfile.mkdtemp(prefix=f"rollcast-e2e-{kind}-"))
    prefix = f"rollcast-e2e:{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "ROLLCAST_PRESET": "test",
        "ROLLCAST_MAX_SESSIONS": str(MAX_SESSIONS),
        "ROLLCAST_LOG_LEVEL": "INFO",
        "ROLLCAST_DEFAULT_QUOTA": "16",
        "ROLLCAST_SHUTDOWN_GRACE_S": "0",
        "ROLLCAST_VIEWER_QUEUE_MESSAGES": "8",
        "ROLLCAST_SLOW_VIEWER_TIMEOUT_S": "60",
        # the test preset's fragments are ~2 KB: a small kernel buffer makes a slow viewer's
        # backlog reach the relay's queue within seconds (the default is 64 KiB)
        "ROLLCAST_WS_SEND_BUFFER_BYTES": "16384",
        "ROLLCAST_TORCH_THREADS": "1",
        **(env_overrides or {}),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes: list[Process] = []
    try:
        if kind == "redis":
            env.update(ROLLCAST_REDIS_URL=REDIS_URL, ROLLCAST_KEY_PREFIX=prefix)
            metrics_port = free_port()
            processes.append(_spawn("api", ["api", "--port", str(port)], env, tmp))
            processes.append(_spawn("worker", ["worker", "--metrics-port", str(metrics_port)], env, tmp))
            metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        else:
            env.pop("ROLLCAST_REDIS_URL", None)
            processes.append(_spawn("serve", ["serve", "--port", str(port)], env, tmp))
            metrics = f"{url}/metrics"
        _wait_ready(url, processes)
        yield Deployment(kind, url, processes[0], metrics, processes, env)
    finally:
        for p in processes:
            p.stop()
        if kind == "redis":
            _delete_prefix(prefix)


def _delete_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
