"""Media layer: H.264 in fragmented MP4 (one fragment per chunk), JPEG frames, and the binary
WebSocket framing that carries both (docs/protocol.md, "Binary media messages")."""

from server.media.decode import DecodedFrame, decode_fmp4, decode_fmp4_frames, decode_jpeg
from server.media.fmp4 import FMP4Encoder
from server.media.framing import (
    HEADER_SIZE,
    MediaFramingError,
    MediaKind,
    MediaMessage,
    pack_media,
    unpack_media,
)
from server.media.jpeg import JPEGEncoder

__all__ = [
    "HEADER_SIZE",
    "DecodedFrame",
    "FMP4Encoder",
    "JPEGEncoder",
    "MediaFramingError",
    "MediaKind",
    "MediaMessage",
    "decode_fmp4",
    "decode_fmp4_frames",
    "decode_jpeg",
    "pack_media",
    "unpack_media",
]
