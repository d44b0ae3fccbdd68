"""The SDK depends on the wire protocol only: importing it (and its CLI modules) pulls in
neither the server nor the engine, nor PyAV/torch, which only decoding and recording need."""

from __future__ import annotations

import subprocess
import sys

from serve_env import REPO

CHECK = """
import sys
import rollcast_client, rollcast_client.cli.watch, rollcast_client.cli.prompt
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("server", "engine", "torch", "av"))
print(",".join(bad))
"""


def test_sdk_imports_nothing_of_the_server() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=REPO / "tests", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_cli_help_lists_the_options() -> None:
    for command, options in (
        ("watch", ("--seconds", "--frames", "--seed", "--api-key")),
        ("prompt", ("--transition",)),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "server.cli", command, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert all(option in result.stdout for option in options)
