"""Shared pytest setup: quiet logs, deterministic torch, the `cuda` marker's skip rule."""

from __future__ import annotations

import os

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
