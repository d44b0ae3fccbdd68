"""Rollcast engine: the Self Forcing causal video generator (no web, no Redis).

The Session API (the seam the server uses):

    from engine import Generator
    gen = Generator.from_preset("tiny")
    session = gen.open("a red circle moving left", seed=1)
    chunk = session.step()        # chunk.frames: uint8 [n, H, W, 3]

Names are imported lazily, so `import engine.data` or `import engine.eval` does not load the
model code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.generator import Generator
    from engine.session import Chunk, ChunkNoise, Session, SessionParams, StreamEnded
    from engine.snapshot import Snapshot

_EXPORTS = {
    "Generator": "engine.generator",
    "Chunk": "engine.session",
    "ChunkNoise": "engine.session",
    "Session": "engine.session",
    "SessionParams": "engine.session",
    "StreamEnded": "engine.session",
    "Snapshot": "engine.snapshot",
}
__all__ = ["Chunk", "ChunkNoise", "Generator", "Session", "SessionParams", "Snapshot", "StreamEnded"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
