"""Binary media messages: the 16-byte header of docs/protocol.md, parsed without the server.

    offset size field
    0      2    magic "RC"
    2      1    version (1)
    3      1    kind: 1 fMP4 init segment, 2 fMP4 fragment, 3 JPEG frame
    4      4    chunk index (u32)
    8      4    first frame index (u32)
    12     2    frame count (u16)
    14     2    reserved (0)

The SDK depends on the wire protocol only, so it carries its own parser (a dozen lines)
instead of importing the server's.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

MAGIC = b"RC"
VERSION = 1
HEADER_SIZE = 16
_HEADER = struct.Struct(">2sBBIIHH")


class MediaKind(IntEnum):
    INIT = 1
    FRAGMENT = 2
    JPEG = 3


class FramingError(ValueError):
    """A binary message that is not a version-1 media message."""


@dataclass
class MediaChunk:
    """One binary media message.

    ``frames`` holds decoded RGB frames (numpy ``uint8 [H, W, 3]`` each) when the stream was
    opened with ``decode=True`` and the message carries pictures; otherwise None.
    ``received_at`` is the client's wall clock (epoch seconds) when the message arrived.
    """

    kind: MediaKind
    chunk_index: int
    first_frame: int
    frame_count: int
    payload: bytes
    received_at: float = field(default_factory=time.time)
    frames: list[Any] | None = None

    @property
    def is_init(self) -> bool:
        return self.kind is MediaKind.INIT

    @property
    def last_frame(self) -> int:
        """Index of the last frame in the payload (first_frame - 1 for an init segment)."""
        return self.first_frame + self.frame_count - 1


def parse_media(data: bytes | bytearray | memoryview) -> MediaChunk:
    """Parse one binary WebSocket message; raises `FramingError` if it is malformed."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise FramingError(f"media message of {len(data)} bytes is shorter than its header")
    magic, version, kind, chunk, first, count, reserved = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FramingError(f"bad magic {magic!r}")
    if version != VERSION:
        raise FramingError(f"unsupported media version {version}")
    if reserved != 0:
        raise FramingError("reserved header bytes are not zero")
    try:
        media_kind = MediaKind(kind)
    except ValueError as exc:
        raise FramingError(f"unknown media kind {kind}") from exc
    return MediaChunk(media_kind, chunk, first, count, data[HEADER_SIZE:])
