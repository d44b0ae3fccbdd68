"""What a worker stores with `Broker.save_snapshot`: the engine snapshot plus worker-side state.

The engine snapshot (`engine.Snapshot.to_bytes()`) restores the stream itself. A worker taking
the session over also needs the control-stream cursor that snapshot corresponds to: control
messages after it have not been applied to the snapshotted state and must be applied again,
those before it must not (a prompt change would otherwise be re-announced). So the stored blob
is a tiny envelope:

    offset size  field
    0      4     magic b"RCWS"
    4      4     u32 big-endian length N of the JSON header
    8      N     JSON header: {"version": 1, "control_cursor": "...", "chunk_index": k, ...}
    8+N    ...   the engine snapshot bytes
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"RCWS"
VERSION = 1
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class WorkerSnapshot:
    engine: bytes
    control_cursor: str
    meta: dict[str, Any]

    def to_bytes(self) -> bytes:
        header = json.dumps({**self.meta, "version": VERSION, "control_cursor": self.control_cursor}).encode()
        return MAGIC + _LEN.pack(len(header)) + header + self.engine

    @classmethod
    def from_bytes(cls, data: bytes) -> WorkerSnapshot:
        if data[:4] != MAGIC or len(data) < 8:
            raise ValueError("not a Rollcast worker snapshot")
        (n,) = _LEN.unpack_from(data, 4)
        header = json.loads(data[8 : 8 + n])
        if header.get("version") != VERSION:
            raise ValueError(f"worker snapshot version {header.get('version')} is not supported")
        cursor = str(header.pop("control_cursor"))
        header.pop("version")
        return cls(engine=bytes(data[8 + n :]), control_cursor=cursor, meta=header)
