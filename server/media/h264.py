"""H.264 bitstream helpers: Annex-B <-> length-prefixed NAL units, avcC, RFC 6381 codec strings.

libx264 (through libavcodec) emits Annex-B: NAL units separated by start codes
(``00 00 01`` or ``00 00 00 01``). MP4 wants the other framing: each NAL unit prefixed by its
length (4 bytes here), and the parameter sets (SPS/PPS) carried once in the ``avcC`` box of the
sample entry instead of in the stream. This module holds only that conversion and the few SPS
fields MP4 needs (profile, constraint flags, level); it never parses slice data.
"""

from __future__ import annotations

from dataclasses import dataclass

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

# Profiles whose avcC carries the extra chroma/bit-depth fields (ISO/IEC 14496-15, 5.3.3.1.2).
_HIGH_PROFILES = frozenset({100, 110, 122, 144})


@dataclass(frozen=True)
class ParameterSets:
    """The stream's sequence and picture parameter sets (NAL units without start codes)."""

    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    @property
    def profile_idc(self) -> int:
        return self.sps[0][1]

    @property
    def constraint_flags(self) -> int:
        return self.sps[0][2]

    @property
    def level_idc(self) -> int:
        return self.sps[0][3]


def nal_type(nal: bytes) -> int:
    """The nal_unit_type (low 5 bits of the first NAL header byte)."""
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream into NAL units (start codes removed).

    Trailing zero bytes before a start code belong to the start code (a 4-byte start code is a
    zero byte followed by a 3-byte one), so they are stripped from the previous NAL unit.
    """
    nals: list[bytes] = []
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    if i < 0:
        raise ValueError("no Annex-B start code found in H.264 data")
    start = i + 3
    while True:
        j = data.find(b"\x00\x00\x01", start)
        end = n if j < 0 else j
        nal = data[start:end]
        if j >= 0:
            nal = nal.rstrip(b"\x00")
        if nal:
            nals.append(bytes(nal))
        if j < 0:
            return nals
        start = j + 3


def to_length_prefixed(nals: list[bytes], length_size: int = 4) -> bytes:
    """Join NAL units as MP4 sample data: each unit preceded by its big-endian length."""
    return b"".join(len(nal).to_bytes(length_size, "big") + nal for nal in nals)


def split_length_prefixed(data: bytes, length_size: int = 4) -> list[bytes]:
    """Inverse of :func:`to_length_prefixed` (raises ValueError on a truncated unit)."""
    nals: list[bytes] = []
    i = 0
    while i < len(data):
        if i + length_size > len(data):
            raise ValueError("truncated NAL length field")
        size = int.from_bytes(data[i : i + length_size], "big")
        i += length_size
        if i + size > len(data):
            raise ValueError("truncated NAL unit")
        nals.append(data[i : i + size])
        i += size
    return nals


def parameter_sets_from_extradata(extradata: bytes) -> ParameterSets:
    """Collect SPS/PPS from codec extradata, which libavcodec gives in Annex-B or avcC form."""
    if extradata[:1] == b"\x01":
        return _parse_avcc(extradata)
    nals = split_annexb(extradata)
    sps = tuple(n for n in nals if nal_type(n) == NAL_SPS)
    pps = tuple(n for n in nals if nal_type(n) == NAL_PPS)
    if not sps or not pps:
        raise ValueError("extradata holds no SPS/PPS")
    return ParameterSets(sps=sps, pps=pps)


def _parse_avcc(data: bytes) -> ParameterSets:
    i = 5
    count = data[i] & 0x1F
    i += 1
    sps: list[bytes] = []
    for _ in range(count):
        size = int.from_bytes(data[i : i + 2], "big")
        sps.append(data[i + 2 : i + 2 + size])
        i += 2 + size
    count = data[i]
    i += 1
    pps: list[bytes] = []
    for _ in range(count):
        size = int.from_bytes(data[i : i + 2], "big")
        pps.append(data[i + 2 : i + 2 + size])
        i += 2 + size
    return ParameterSets(sps=tuple(sps), pps=tuple(pps))


def avcc_record(ps: ParameterSets, *, chroma_format_idc: int = 1, bit_depth: int = 8) -> bytes:
    """AVCDecoderConfigurationRecord (the payload of the ``avcC`` box), 4-byte NAL lengths.

    ``chroma_format_idc``/``bit_depth`` describe the encoded picture format; they are only
    written for the High profiles, where the record requires them. The encoder always feeds
    8-bit 4:2:0, hence the defaults.
    """
    out = bytearray([1, ps.profile_idc, ps.constraint_flags, ps.level_idc, 0xFC | 3])
    out.append(0xE0 | len(ps.sps))
    for sps in ps.sps:
        out += len(sps).to_bytes(2, "big") + sps
    out.append(len(ps.pps))
    for pps in ps.pps:
        out += len(pps).to_bytes(2, "big") + pps
    if ps.profile_idc in _HIGH_PROFILES:
        out += bytes([0xFC | chroma_format_idc, 0xF8 | (bit_depth - 8), 0xF8 | (bit_depth - 8), 0])
    return bytes(out)


def codec_string(ps: ParameterSets) -> str:
    """RFC 6381 codec parameter for MSE, e.g. ``avc1.42C01E``: profile, constraints, level."""
    return f"avc1.{ps.profile_idc:02X}{ps.constraint_flags:02X}{ps.level_idc:02X}"
