"""Run a real `rollcast serve` (API + worker, in-process broker) as a subprocess for the
client tests, plus a TCP proxy that can cut the WebSocket connections passing through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
READY_RE = re.compile(r"Rollcast is running at (http://\S+)")


class ServeProcess:
    """`rollcast serve --preset test --port 0`; ``url`` is the bound base URL once started."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.env = {
            **os.environ,
            "ROLLCAST_LOG_LEVEL": "WARNING",
            "ROLLCAST_DEFAULT_QUOTA": "16",
            "ROLLCAST_SHUTDOWN_GRACE_S": "0",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="rollcast-serve-", suffix=".log", delete=False
        )

    def start(self, timeout_s: float = 120.0) -> ServeProcess:
        cmd = [sys.executable, "-m", "server.cli", "serve", "--preset", "test", "--port", "0", *self.args]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rollcast serve exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            match = READY_RE.search(line)
            if match:
                self.url = match.group(1)
                self._wait_ready(deadline)
                return self
        self.stop()
        raise RuntimeError(f"rollcast serve did not start in {timeout_s} s:\n{self.logs()}")

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("rollcast serve never became ready")

    def logs(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


class DropProxy:
    """A TCP proxy in front of a server; `drop_streams()` aborts (RST) every proxied
    WebSocket stream connection, which a client sees as an abnormal closure (1006)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.streams: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> DropProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        first = await reader.read(65536)
        if b"/stream" in first.split(b"\r\n", 1)[0]:
            self.streams.append((writer, up_writer))
        up_writer.write(first)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    def drop_streams(self) -> int:
        dropped = len(self.streams)
        for client_side, server_side in self.streams:
            client_side.transport.abort()
            server_side.transport.abort()
        self.streams.clear()
        return dropped

    async def close(self) -> None:
        self.drop_streams()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class ThreadedDropProxy:
    """`DropProxy` on its own event loop in a thread, for synchronous tests (Playwright)."""

    def __init__(self, base_url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        proxy = DropProxy(parts.hostname or "127.0.0.1", parts.port or 80)
        self.proxy = asyncio.run_coroutine_threadsafe(proxy.start(), self.loop).result(10)

    @property
    def url(self) -> str:
        return self.proxy.url

    def drop_streams(self) -> int:
        async def drop() -> int:
            return self.proxy.drop_streams()

        return asyncio.run_coroutine_threadsafe(drop(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
