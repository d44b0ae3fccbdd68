"""Annex-B / length-prefixed NAL conversion, avcC and codec strings on hand-made bitstreams."""

from __future__ import annotations

import pytest

from server.media import h264

SPS = bytes([0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9])  # High profile, level 3.1
PPS = bytes([0x68, 0xEB, 0xE3, 0xCB])
IDR = bytes([0x65, 0x88, 0x84, 0x00, 0x10])  # ends with a zero-containing payload byte run


def test_split_annexb_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01" + IDR
    assert h264.split_annexb(stream) == [SPS, PPS, IDR]
    assert [h264.nal_type(n) for n in h264.split_annexb(stream)] == [7, 8, 5]


def test_split_annexb_without_start_code() -> None:
    with pytest.raises(ValueError, match="start code"):
        h264.split_annexb(b"\x65\x88")


def test_length_prefixed_round_trip() -> None:
    data = h264.to_length_prefixed([SPS, PPS, IDR])
    assert data[:4] == len(SPS).to_bytes(4, "big")
    assert h264.split_length_prefixed(data) == [SPS, PPS, IDR]
    with pytest.raises(ValueError, match="truncated"):
        h264.split_length_prefixed(data[:-1])


def test_parameter_sets_codec_string_and_avcc() -> None:
    ps = h264.parameter_sets_from_extradata(b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS)
    assert ps.sps == (SPS,)
    assert ps.pps == (PPS,)
    assert h264.codec_string(ps) == "avc1.64001F"
    record = h264.avcc_record(ps)
    expected = bytes([1, 0x64, 0x00, 0x1F, 0xFF, 0xE1]) + len(SPS).to_bytes(2, "big") + SPS
    expected += bytes([1]) + len(PPS).to_bytes(2, "big") + PPS + bytes([0xFD, 0xF8, 0xF8, 0x00])
    assert record == expected
    assert h264.parameter_sets_from_extradata(record) == ps  # avcC extradata is read back too


def test_baseline_avcc_has_no_high_profile_fields() -> None:
    sps = bytes([0x67, 0x42, 0xC0, 0x1E, 0xDA])
    ps = h264.ParameterSets(sps=(sps,), pps=(PPS,))
    assert h264.codec_string(ps) == "avc1.42C01E"
    assert h264.avcc_record(ps).endswith(PPS)


def test_extradata_without_parameter_sets() -> None:
    with pytest.raises(ValueError, match="SPS"):
        h264.parameter_sets_from_extradata(b"\x00\x00\x01" + IDR)
