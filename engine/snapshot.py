"""Session snapshots for failover: what a fresh worker needs to continue a stream.

A snapshot holds the stream counters, the prompt state, the session's random-number-generator
state, the clean latents of the frames in the KV cache (with their frame positions), the VAE
decoder's feature cache and, for kind "full", the KV cache itself.

- "full": resuming continues with exactly the frames the original session would have produced.
  Size ~ 2 * layers * cached tokens * dim values (7 MB for `tiny`, 6 GB for wan-1.3b in bf16).
- "compact": no KV cache; the resumed session rebuilds it by re-running the refresh pass over
  the stored context latents. Exact in global mode; in rolling mode the rebuilt cache no longer
  carries the influence of evicted frames, so the continuation is close but not identical.
  Size ~ the cached latents (50 KB for `tiny`, 8 MB for wan-1.3b).

Serialised with safetensors (tensors) + a JSON metadata entry; `to_bytes`/`from_bytes` round trip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

SNAPSHOT_VERSION = 1
SnapshotKind = Literal["full", "compact"]


@dataclass
class Snapshot:
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def kind(self) -> SnapshotKind:
        kind: SnapshotKind = self.meta["kind"]
        return kind

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}
        return save(tensors, metadata={"rollcast_snapshot": json.dumps(self.meta)})

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        from safetensors.torch import load

        tensors = load(data)
        # safetensors format: 8-byte little-endian header length, then a JSON header.
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        raw = header.get("__metadata__", {}).get("rollcast_snapshot")
        if raw is None:
            raise ValueError("not a Rollcast snapshot (no metadata)")
        meta = json.loads(raw)
        if meta.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"snapshot version {meta.get('version')} is not supported (want {SNAPSHOT_VERSION})"
            )
        return cls(meta, dict(tensors))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())
