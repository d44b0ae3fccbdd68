"""Binary WebSocket media messages: a fixed 16-byte header followed by the payload.

Layout (all integers big-endian; documented in docs/protocol.md, "Binary media messages"):

    offset size  field
    0      2     magic, ASCII "RC"
    2      1     version, 1
    3      1     kind: 1 fMP4 init segment, 2 fMP4 media fragment, 3 JPEG frame
    4      4     chunk index (u32)
    8      4     first frame index (u32)
    12     2     frame count (u16)
    14     2     reserved, zero

A fixed header (rather than JSON or a varint scheme) keeps clients trivial — a ``DataView`` in
the browser, ``struct`` in Python — and lets a client route a message without touching the
payload. The reserved bytes must be zero so that a later version can give them a meaning.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"RC"
VERSION = 1
HEADER_SIZE = 16
_HEADER = struct.Struct(">2sBBIIHH")
_U32_MAX = 0xFFFF_FFFF
_U16_MAX = 0xFFFF


class MediaKind(IntEnum):
    INIT = 1  # fMP4 init segment (ftyp + moov); chunk 0, first frame 0, frame count 0
    FRAGMENT = 2  # fMP4 media fragment (moof + mdat) holding one whole chunk
    JPEG = 3  # one JPEG image; frame count 1


class MediaFramingError(ValueError):
    """A binary message that is not a valid version-1 media message."""


@dataclass(frozen=True)
class MediaMessage:
    kind: MediaKind
    chunk_index: int
    first_frame: int
    frame_count: int
    payload: bytes


def pack_media(
    kind: MediaKind | int, chunk_index: int, first_frame: int, frame_count: int, payload: bytes
) -> bytes:
    """Header + payload, ready to send as one binary WebSocket message."""
    try:
        kind = MediaKind(kind)
    except ValueError as exc:
        raise MediaFramingError(f"unknown media kind {kind}") from exc
    if not 0 <= chunk_index <= _U32_MAX:
        raise MediaFramingError(f"chunk index {chunk_index} does not fit in u32")
    if not 0 <= first_frame <= _U32_MAX:
        raise MediaFramingError(f"first frame index {first_frame} does not fit in u32")
    if not 0 <= frame_count <= _U16_MAX:
        raise MediaFramingError(f"frame count {frame_count} does not fit in u16")
    if kind is MediaKind.INIT and (chunk_index, first_frame, frame_count) != (0, 0, 0):
        raise MediaFramingError("an init segment has chunk index 0, first frame 0, frame count 0")
    header = _HEADER.pack(MAGIC, VERSION, kind, chunk_index, first_frame, frame_count, 0)
    return header + bytes(payload)


def unpack_media(data: bytes | bytearray | memoryview) -> MediaMessage:
    """Parse a binary media message; raises :class:`MediaFramingError` if it is malformed."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise MediaFramingError(
            f"media message is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    magic, version, kind, chunk_index, first_frame, frame_count, reserved = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MediaFramingError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise MediaFramingError(f"unsupported media message version {version}, expected {VERSION}")
    try:
        media_kind = MediaKind(kind)
    except ValueError as exc:
        raise MediaFramingError(f"unknown media kind {kind}") from exc
    if reserved != 0:
        raise MediaFramingError(f"reserved header bytes must be zero, got 0x{reserved:04x}")
    return MediaMessage(media_kind, chunk_index, first_frame, frame_count, data[HEADER_SIZE:])
