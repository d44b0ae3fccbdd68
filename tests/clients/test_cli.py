"""`rollcast watch` and `rollcast prompt` as a user runs them, against `rollcast serve`."""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import httpx
import pytest
from serve_env import REPO, ServeProcess

pytestmark = pytest.mark.timeout(240)


def rollcast(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ROLLCAST_API_KEY": ""},
    )


def top_level_boxes(path: Path) -> list[bytes]:
    data = path.read_bytes()
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        boxes.append(data[pos + 4 : pos + 8])
        if size < 8:
            break
        pos += size
    return boxes


def decoded_frames(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        return [(f.height, f.width) for f in container.decode(video=0)]


def test_watch_records_the_requested_frames(rollcast_server: ServeProcess, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    result = rollcast(
        "watch",
        "a paper boat on a river",
        "-o",
        str(out),
        "--frames",
        "30",
        "--seed",
        "3",
        "--server",
        rollcast_server.url,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^session s_[0-9a-f]+$", result.stdout, re.M)
    assert "rollcast prompt" in result.stderr and "30 frames" in result.stderr
    model = httpx.get(f"{rollcast_server.url}/v1/models").json()["models"][0]
    assert decoded_frames(out) == [(model["height"], model["width"])] * 30
    boxes = top_level_boxes(out)  # remuxed: an ordinary MP4 with an index, no fragments
    assert b"moov" in boxes and b"moof" not in boxes
    assert not list(tmp_path.glob("*.part"))


def test_watch_seconds_uses_the_model_rate(rollcast_server: ServeProcess, tmp_path: Path) -> None:
    out = tmp_path / "seconds.mp4"
    result = rollcast(
        "watch",
        "a windmill",
        "-o",
        str(out),
        "--seconds",
        "1.5",
        "--fragmented",
        "--quiet",
        "--server",
        rollcast_server.url,
    )
    assert result.returncode == 0, result.stderr
    fps = httpx.get(f"{rollcast_server.url}/v1/models").json()["models"][0]["fps"]
    assert len(decoded_frames(out)) == math.ceil(1.5 * fps)
    assert b"moof" in top_level_boxes(out)  # --fragmented keeps the stream as received


def test_prompt_from_another_terminal_then_ctrl_c(rollcast_server: ServeProcess, tmp_path: Path) -> None:
    """The documented workflow: an unbounded `watch`, a `prompt` from elsewhere, Ctrl-C."""
    out = tmp_path / "live.mp4"
    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli",
            "watch",
            "a lighthouse at dusk",
            "-o",
            str(out),
            "--server",
            rollcast_server.url,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None and watch.stderr is not None
    stderr = watch.stderr
    threading.Thread(target=lambda: [errors.put(line) for line in stderr], daemon=True).start()
    try:
        line = watch.stdout.readline()
        match = re.match(r"session (s_[0-9a-f]+)", line)
        assert match, line
        session_id = match.group(1)
        result = rollcast(
            "prompt",
            session_id,
            "a lighthouse in a storm",
            "--transition",
            "recache",
            "--server",
            rollcast_server.url,
        )
        assert result.returncode == 0, result.stderr
        assert session_id in result.stdout
        seen = ""
        deadline = time.monotonic() + 120
        while "prompt applied" not in seen and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                seen += errors.get(timeout=1)
        assert "a lighthouse in a storm" in seen
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=60) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
    rest = "".join(list(errors.queue))
    frames = int(re.search(r"wrote .*: (\d+) frames", seen + rest).group(1))  # type: ignore[union-attr]
    assert "session ended: stopped" in seen + rest
    assert frames > 0 and len(decoded_frames(out)) == frames
    info = httpx.get(f"{rollcast_server.url}/v1/sessions/{session_id}").json()
    assert info["state"] == "ended" and info["end_reason"] == "stopped"


def test_prompt_errors_are_reported(rollcast_server: ServeProcess) -> None:
    result = rollcast("prompt", "s_0000000000000000", "anything", "--server", rollcast_server.url)
    assert result.returncode == 2
    assert "not_found" in result.stderr and "404" in result.stderr
    result = rollcast("watch", "-o", "/tmp/never.mp4", "--server", rollcast_server.url)
    assert result.returncode == 2 and "PROMPT" in result.stderr
