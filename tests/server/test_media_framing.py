"""Binary media message framing: exact header layout, round trips, every malformed header."""

from __future__ import annotations

import struct

import pytest

from server.media.framing import (
    HEADER_SIZE,
    MediaFramingError,
    MediaKind,
    MediaMessage,
    pack_media,
    unpack_media,
)


def test_header_layout_is_the_documented_one() -> None:
    msg = pack_media(MediaKind.FRAGMENT, 0x01020304, 0x0A0B0C0D, 0x1234, b"payload")
    assert HEADER_SIZE == 16
    assert msg[0:2] == b"RC"
    assert msg[2] == 1
    assert msg[3] == 2
    assert msg[4:8] == bytes([1, 2, 3, 4])
    assert msg[8:12] == bytes([0x0A, 0x0B, 0x0C, 0x0D])
    assert msg[12:14] == bytes([0x12, 0x34])
    assert msg[14:16] == b"\x00\x00"
    assert msg[16:] == b"payload"


@pytest.mark.parametrize(
    ("kind", "chunk", "first", "count"),
    [
        (MediaKind.INIT, 0, 0, 0),
        (MediaKind.FRAGMENT, 0, 0, 9),
        (MediaKind.FRAGMENT, 7, 81, 12),
        (MediaKind.FRAGMENT, 2**32 - 1, 2**32 - 1, 2**16 - 1),
        (MediaKind.JPEG, 3, 45, 1),
    ],
)
def test_round_trip(kind: MediaKind, chunk: int, first: int, count: int) -> None:
    payload = bytes(range(256)) * 3
    msg = unpack_media(pack_media(kind, chunk, first, count, payload))
    assert msg == MediaMessage(kind, chunk, first, count, payload)
    assert isinstance(msg.kind, MediaKind)


def test_accepts_int_kind_memoryview_and_empty_payload() -> None:
    data = pack_media(3, 1, 2, 1, b"")
    msg = unpack_media(memoryview(data))
    assert msg.kind is MediaKind.JPEG
    assert msg.payload == b""


def test_message_is_frozen() -> None:
    msg = unpack_media(pack_media(MediaKind.JPEG, 1, 2, 1, b"x"))
    with pytest.raises(AttributeError):
        msg.chunk_index = 5  # type: ignore[misc]


def _valid() -> bytearray:
    return bytearray(pack_media(MediaKind.FRAGMENT, 5, 60, 12, b"abc"))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.__setitem__(slice(0, 2), b"XC"), "magic"),
        (lambda d: d.__setitem__(0, ord("r")), "magic"),
        (lambda d: d.__setitem__(2, 2), "version"),
        (lambda d: d.__setitem__(2, 0), "version"),
        (lambda d: d.__setitem__(3, 0), "kind"),
        (lambda d: d.__setitem__(3, 4), "kind"),
        (lambda d: d.__setitem__(3, 255), "kind"),
        (lambda d: d.__setitem__(14, 1), "reserved"),
        (lambda d: d.__setitem__(15, 0x80), "reserved"),
    ],
)
def test_malformed_header_is_rejected(mutate: object, match: str) -> None:
    data = _valid()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(MediaFramingError, match=match):
        unpack_media(bytes(data))


@pytest.mark.parametrize("length", [0, 1, 2, 15])
def test_short_message_is_rejected(length: int) -> None:
    with pytest.raises(MediaFramingError, match="shorter"):
        unpack_media(bytes(_valid()[:length]))


def test_header_only_message_is_valid() -> None:
    assert unpack_media(bytes(_valid()[:16])).payload == b""


def test_framing_error_is_a_value_error() -> None:
    assert issubclass(MediaFramingError, ValueError)
    with pytest.raises(ValueError):
        unpack_media(b"nope")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((9, 0, 0, 1), "kind"),
        ((MediaKind.FRAGMENT, -1, 0, 1), "chunk index"),
        ((MediaKind.FRAGMENT, 2**32, 0, 1), "chunk index"),
        ((MediaKind.FRAGMENT, 0, -1, 1), "first frame"),
        ((MediaKind.FRAGMENT, 0, 2**32, 1), "first frame"),
        ((MediaKind.FRAGMENT, 0, 0, 2**16), "frame count"),
        ((MediaKind.FRAGMENT, 0, 0, -1), "frame count"),
        ((MediaKind.INIT, 1, 0, 0), "init segment"),
        ((MediaKind.INIT, 0, 0, 3), "init segment"),
    ],
)
def test_pack_rejects_out_of_range_fields(args: tuple[int, int, int, int], match: str) -> None:
    with pytest.raises(MediaFramingError, match=match):
        pack_media(*args, b"x")


def test_unpack_reads_header_with_struct_independently() -> None:
    header = struct.pack(">2sBBIIHH", b"RC", 1, 1, 0, 0, 0, 0)
    msg = unpack_media(header + b"\x00\x00\x00\x18ftyp")
    assert msg.kind is MediaKind.INIT
    assert (msg.chunk_index, msg.first_frame, msg.frame_count) == (0, 0, 0)
    assert msg.payload.endswith(b"ftyp")
