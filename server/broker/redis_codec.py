"""Reply decoding and blocking-read slicing shared by the Redis broker modules."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from server.broker.models import OutputEntry


def text(value: bytes | str) -> str:
    """Redis replies are bytes (decode_responses=False, for media payloads); names are text."""
    return value.decode() if isinstance(value, bytes) else value


def json_pairs(fields: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name, value in fields.items():
        out += [name, json.dumps(value)]
    return out


async def block_slices(block_s: float, slice_s: float) -> AsyncIterator[int | None]:
    """BLOCK values (ms; None = don't block) for successive reads until ``block_s`` passed."""
    if block_s <= 0:
        yield None
        return
    deadline = time.monotonic() + block_s
    while (remaining := deadline - time.monotonic()) > 0:
        yield max(1, int(min(remaining, slice_s) * 1000))


def xread_entries(resp: Any) -> list[tuple[str, list[tuple[str, dict[bytes, bytes]]]]]:
    """Normalise an XREAD/XREADGROUP reply (list or dict shaped) to [(stream, entries)]."""
    if not resp:
        return []
    items = resp.items() if isinstance(resp, dict) else resp
    out = []
    for stream, entries in items:
        if entries and isinstance(entries[0], list):  # RESP3 dict shape wraps once more
            entries = entries[0]
        out.append((text(stream), [(text(i), f) for i, f in entries if i is not None]))
    return out


def output_entry(entry_id: str, f: dict[bytes, bytes]) -> OutputEntry:
    if f.get(b"kind") == b"event":
        return OutputEntry(entry_id, "event", event=json.loads(f[b"data"]))
    meta = json.loads(f[b"meta"]) if b"meta" in f else {}
    return OutputEntry(entry_id, "media", data=f.get(b"data", b""), meta=meta)
