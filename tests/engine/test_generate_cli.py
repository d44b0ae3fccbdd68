"""`rollcast generate` writes a playable H.264 mp4 (decoded back with PyAV)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np


def test_generate_writes_a_playable_mp4(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        "generate",
        "a red circle moving left",
        "-o",
        str(out),
        "--preset",
        "test",
        "--frames",
        "30",
        "--seed",
        "3",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "wrote 30 frames (48x32 @ 16 fps)" in done.stdout
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 30
    assert all(f.shape == (32, 48, 3) for f in frames)
    assert np.std(np.stack(frames).astype(float)) > 1.0  # not a blank video


def test_generate_help_and_bad_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "generate", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--frames" in done.stdout and "--seed" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "server.cli", "generate", "x", "--frames", "0", "--preset", "test"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "--frames" in bad.stderr


def test_rollcast_help_lists_commands() -> None:
    done = subprocess.run([sys.executable, "-m", "server.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for name in ("serve", "api", "worker", "generate", "verify-reference", "train", "eval"):
        assert name in done.stdout
