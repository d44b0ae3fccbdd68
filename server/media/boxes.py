"""Minimal ISO-BMFF (MP4) box writer for a single-track fragmented H.264 stream.

Only what a Media Source Extensions player needs is written, following ISO/IEC 14496-12 and
14496-15 and the MSE byte-stream format for ISO BMFF:

* init segment = ``ftyp`` + ``moov``; the ``moov`` has one video ``trak`` whose sample tables are
  empty (all samples live in fragments) and an ``mvex``/``trex`` that announces fragments. There
  is no edit list: with no B-frames decode time equals presentation time, so the track starts at
  0 without an offset to compensate.
* media fragment = ``moof`` + ``mdat``; the ``moof`` has ``mfhd`` (sequence number), one
  ``traf`` with ``tfhd`` (default-base-is-moof, so data offsets are relative to the ``moof``),
  ``tfdt`` (64-bit baseMediaDecodeTime, so a fragment can be placed on the timeline without
  having seen the earlier ones), and ``trun`` with an explicit duration, size and flags for
  every sample.

All integers are big-endian; every box here is small enough for a 32-bit size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

TRACK_ID = 1

# Sample flags (ISO/IEC 14496-12, 8.8.3.1): sample_depends_on in bits 24-25,
# sample_is_non_sync_sample in bit 16.
SAMPLE_FLAGS_SYNC = 0x0200_0000  # depends on no other sample: an IDR picture
SAMPLE_FLAGS_NON_SYNC = 0x0101_0000  # depends on others, not a sync sample

TFHD_DEFAULT_BASE_IS_MOOF = 0x02_0000
TRUN_DATA_OFFSET = 0x000001
TRUN_SAMPLE_DURATION = 0x000100
TRUN_SAMPLE_SIZE = 0x000200
TRUN_SAMPLE_FLAGS = 0x000400

_UNITY_MATRIX = struct.pack(">9i", 0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000)


def box(kind: bytes, *payload: bytes) -> bytes:
    """A plain box: 32-bit size, 4-character type, payload."""
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A box whose payload starts with a version byte and 24 bits of flags."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


@dataclass(frozen=True)
class VideoTrack:
    """What the init segment says about the one video track."""

    width: int  # coded picture size in pixels
    height: int
    timescale: int  # ticks per second for every time value in the stream
    sample_duration: int  # ticks per frame
    avcc: bytes  # AVCDecoderConfigurationRecord


def init_segment(track: VideoTrack) -> bytes:
    """``ftyp`` + ``moov`` for a fragmented stream (no samples in the moov itself)."""
    # iso5 is the first brand that defines default-base-is-moof; iso6 adds nothing we use but
    # is what recent players expect next to it; avc1 announces the sample entry.
    ftyp = box(b"ftyp", b"iso5", struct.pack(">I", 0x200), b"iso5", b"iso6", b"avc1", b"mp41")
    return ftyp + box(b"moov", _mvhd(track.timescale), _trak(track), _mvex(track))


def _mvhd(timescale: int) -> bytes:
    return full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, timescale, 0),  # creation, modification, timescale, duration
        struct.pack(">IH", 0x0001_0000, 0x0100),  # rate 1.0, volume 1.0
        bytes(10),  # reserved
        _UNITY_MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", TRACK_ID + 1),  # next_track_ID
    )


def _trak(track: VideoTrack) -> bytes:
    tkhd = full_box(
        b"tkhd",
        0,
        0x3,  # track enabled, in movie
        struct.pack(">IIIII", 0, 0, TRACK_ID, 0, 0),  # creation, modification, id, reserved, duration
        bytes(8),  # reserved
        struct.pack(">hhhH", 0, 0, 0, 0),  # layer, alternate_group, volume (0 for video), reserved
        _UNITY_MATRIX,
        struct.pack(">II", track.width << 16, track.height << 16),  # 16.16 fixed point
    )
    mdhd = full_box(
        b"mdhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, track.timescale, 0),
        struct.pack(">HH", _language_code("und"), 0),
    )
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"Rollcast video\x00")
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))  # graphicsmode + opcolor
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _avc1(track)),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, dinf, stbl)))


def _avc1(track: VideoTrack) -> bytes:
    name = b"Rollcast H.264"
    compressor = bytes([len(name)]) + name + bytes(31 - len(name))
    return box(
        b"avc1",
        bytes(6),  # reserved
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),  # pre_defined, reserved, pre_defined[3]
        struct.pack(">HH", track.width, track.height),
        struct.pack(">II", 0x0048_0000, 0x0048_0000),  # 72 dpi
        bytes(4),  # reserved
        struct.pack(">H", 1),  # frame_count per sample
        compressor,
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        box(b"avcC", track.avcc),
        box(b"pasp", struct.pack(">II", 1, 1)),  # square pixels
    )


def _mvex(track: VideoTrack) -> bytes:
    trex = full_box(
        b"trex",
        0,
        0,
        struct.pack(">IIIII", TRACK_ID, 1, track.sample_duration, 0, SAMPLE_FLAGS_NON_SYNC),
    )
    return box(b"mvex", trex)


def _language_code(lang: str) -> int:
    """ISO-639-2/T code packed as three 5-bit letters."""
    a, b, c = (ord(ch) - 0x60 for ch in lang)
    return (a << 10) | (b << 5) | c


def media_fragment(
    sequence_number: int,
    base_decode_time: int,
    samples: list[bytes],
    keyframes: list[bool],
    sample_duration: int,
) -> bytes:
    """``moof`` + ``mdat`` holding ``samples`` (length-prefixed access units) back to back.

    ``base_decode_time`` is the decode time of the first sample in timescale ticks; every
    sample lasts ``sample_duration`` ticks.
    """
    if not samples or len(samples) != len(keyframes):
        raise ValueError("a fragment needs one keyframe flag per sample and at least one sample")
    entries = b"".join(
        struct.pack(">III", sample_duration, len(s), SAMPLE_FLAGS_SYNC if key else SAMPLE_FLAGS_NON_SYNC)
        for s, key in zip(samples, keyframes, strict=True)
    )
    trun_flags = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS

    def build_moof(data_offset: int) -> bytes:
        tfhd = full_box(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", TRACK_ID))
        tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))
        trun = full_box(b"trun", 0, trun_flags, struct.pack(">Ii", len(samples), data_offset), entries)
        mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
        return box(b"moof", mfhd, box(b"traf", tfhd, tfdt, trun))

    # The data offset counts from the first byte of the moof to the first sample byte, i.e.
    # past the moof and the 8-byte mdat header; the moof's size does not depend on its value.
    moof_size = len(build_moof(0))
    return build_moof(moof_size + 8) + box(b"mdat", *samples)
