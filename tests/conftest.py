"""Shared pytest setup: quiet logs, deterministic torch, the `cuda` marker's skip rule, and a
dump of every asyncio task's stack shortly before a test runs into its timeout."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
from collections.abc import Generator

import pytest

os.environ.setdefault("ROLLCAST_LOG_LEVEL", "WARNING")

# Micro models and a shared 2-core machine: one intra-op thread per process avoids OpenMP
# threads waiting on each other for a busy core at every op (subprocesses get the same).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ROLLCAST_TORCH_THREADS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked `cuda` compare CUDA fast paths with the CPU reference; without a GPU there is
    # nothing to compare, so they are skipped (CI has no GPU; they run on the device machine).
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (marker: cuda)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# pytest-timeout's dump shows threads only; a hung async test waits in the event loop's select,
# so shortly before the limit every running loop's tasks are printed with where they wait.
TASK_DUMP_BEFORE_S = 30.0


def _dump_async_tasks() -> None:
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]
    for loop in loops:
        for task in asyncio.all_tasks(loop):
            print(f"--- asyncio task {task.get_name()} (test about to time out)", file=sys.stderr)
            task.print_stack(file=sys.stderr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 0)
    timer = None
    if limit > 2 * TASK_DUMP_BEFORE_S:
        timer = threading.Timer(limit - TASK_DUMP_BEFORE_S, _dump_async_tasks)
        timer.daemon = True
        timer.start()
    try:
        return (yield)
    finally:
        if timer is not None:
            timer.cancel()
