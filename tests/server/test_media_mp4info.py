"""The read-only box parser on hand-built boxes (independent of the writer)."""

from __future__ import annotations

import struct

import pytest

from server.media import mp4info


def raw_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_iter_boxes_sizes_32_64_and_to_end() -> None:
    big = struct.pack(">I4sQ", 1, b"free", 16 + 3) + b"abc"
    data = raw_box(b"ftyp", b"iso5") + big + struct.pack(">I4s", 0, b"mdat") + b"rest"
    boxes = list(mp4info.iter_boxes(data))
    assert [b.type for b in boxes] == ["ftyp", "free", "mdat"]
    assert boxes[1].header_size == 16
    assert boxes[1].size == 19
    assert boxes[2].end == len(data)


@pytest.mark.parametrize(
    "data",
    [b"\x00\x00\x00", struct.pack(">I4s", 4, b"bad!"), struct.pack(">I4s", 100, b"long") + b"x"],
)
def test_iter_boxes_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ValueError):
        list(mp4info.iter_boxes(data))


def test_parse_fragment_with_defaults_in_tfhd_and_first_sample_flags() -> None:
    # tfhd: default duration (0x8) + default size (0x10) + default flags (0x20), base = moof;
    # trun: data offset + first-sample-flags only, so every sample takes the defaults.
    tfhd = raw_box(b"tfhd", struct.pack(">II", 0x020038, 1) + struct.pack(">III", 512, 10, 0x01010000))
    tfdt = raw_box(b"tfdt", struct.pack(">IQ", 1 << 24, 4096))
    mfhd = raw_box(b"mfhd", struct.pack(">II", 0, 7))
    trun_len = 8 + 16
    moof_len = 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt) + trun_len
    trun = raw_box(b"trun", struct.pack(">IIiI", 0x000005, 3, moof_len + 8, 0x02000000))
    moof = raw_box(b"moof", mfhd + raw_box(b"traf", tfhd + tfdt + trun))
    frag = moof + raw_box(b"mdat", bytes(30))
    info = mp4info.parse_fragment(frag)
    assert info.sequence_number == 7
    assert info.base_decode_time == 4096
    assert [s.duration for s in info.samples] == [512] * 3
    assert [s.is_sync for s in info.samples] == [True, False, False]
    assert [s.data_offset for s in info.samples] == [len(moof) + 8 + 10 * k for k in range(3)]
