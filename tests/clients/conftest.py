"""Fixtures for the client tests: one shared `rollcast serve` (test preset) per test run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_env import ServeProcess


@pytest.fixture(scope="session")
def rollcast_server() -> Iterator[ServeProcess]:
    server = ServeProcess().start()
    try:
        yield server
    finally:
        server.stop()
