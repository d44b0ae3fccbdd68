"""Read-only inspection of fragmented MP4: top-level boxes and the contents of a fragment.

Independent of the writer in :mod:`server.media.boxes` (it parses generic ISO-BMFF, honouring
64-bit sizes and the optional tfhd/trun fields the writer never emits), so tests and clients
can check what a stream really says: one ``moof`` + one ``mdat`` per fragment, sample flags,
decode times. No dependency beyond the standard library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    type: str
    offset: int  # of the box header within the parsed buffer
    size: int  # header included
    header_size: int

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size

    @property
    def end(self) -> int:
        return self.offset + self.size


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Boxes laid end to end in ``data[start:end]``; raises ValueError on a malformed size."""
    end = len(data) if end is None else end
    i = start
    while i < end:
        if i + 8 > end:
            raise ValueError(f"truncated box header at offset {i}")
        size, kind = struct.unpack_from(">I4s", data, i)
        header = 8
        if size == 1:
            if i + 16 > end:
                raise ValueError(f"truncated 64-bit box size at offset {i}")
            (size,) = struct.unpack_from(">Q", data, i + 8)
            header = 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            raise ValueError(f"box {kind!r} at offset {i} has bad size {size}")
        yield Box(kind.decode("latin-1"), i, size, header)
        i += size


def top_level_types(data: bytes) -> list[str]:
    """Types of the top-level boxes, e.g. ``['moof', 'mdat']`` for one media fragment."""
    return [b.type for b in iter_boxes(data)]


def find_box(data: bytes, path: str, start: int = 0, end: int | None = None) -> Box | None:
    """First box at ``path`` ('moov/trak/mdia/mdhd'), searching containers recursively."""
    first, _, rest = path.partition("/")
    for b in iter_boxes(data, start, end):
        if b.type != first:
            continue
        if not rest:
            return b
        inner_start = b.payload_offset + (8 if first == "stsd" else 0)  # stsd: version + count
        found = find_box(data, rest, inner_start, b.end)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class Sample:
    duration: int
    size: int
    flags: int
    data_offset: int  # absolute offset of the sample bytes within the fragment

    @property
    def is_sync(self) -> bool:
        return not (self.flags >> 16) & 1


@dataclass(frozen=True)
class FragmentInfo:
    sequence_number: int
    track_id: int
    base_decode_time: int
    samples: tuple[Sample, ...]


def parse_fragment(data: bytes) -> FragmentInfo:
    """Parse one ``moof`` (+ ``mdat``) with a single ``traf`` and a single ``trun``."""
    moof = find_box(data, "moof")
    if moof is None:
        raise ValueError("no moof box")
    mfhd = _require(data, "moof/mfhd", moof.offset)
    (seq,) = struct.unpack_from(">I", data, mfhd.payload_offset + 4)
    tfhd = _require(data, "moof/traf/tfhd", moof.offset)
    tfhd_flags, track_id = struct.unpack_from(">II", data, tfhd.payload_offset)
    tfhd_flags &= 0xFFFFFF
    pos = tfhd.payload_offset + 8
    base_offset = moof.offset
    if tfhd_flags & 0x1:
        (base_offset,) = struct.unpack_from(">Q", data, pos)
        pos += 8
    if tfhd_flags & 0x2:
        pos += 4
    default_duration = default_size = default_flags = 0
    if tfhd_flags & 0x8:
        (default_duration,) = struct.unpack_from(">I", data, pos)
        pos += 4
    if tfhd_flags & 0x10:
        (default_size,) = struct.unpack_from(">I", data, pos)
        pos += 4
    if tfhd_flags & 0x20:
        (default_flags,) = struct.unpack_from(">I", data, pos)
    tfdt = _require(data, "moof/traf/tfdt", moof.offset)
    version = data[tfdt.payload_offset]
    fmt = ">Q" if version == 1 else ">I"
    (base_time,) = struct.unpack_from(fmt, data, tfdt.payload_offset + 4)
    trun = _require(data, "moof/traf/trun", moof.offset)
    (vflags,) = struct.unpack_from(">I", data, trun.payload_offset)
    flags = vflags & 0xFFFFFF
    (count,) = struct.unpack_from(">I", data, trun.payload_offset + 4)
    pos = trun.payload_offset + 8
    data_offset = 0
    if flags & 0x1:
        (data_offset,) = struct.unpack_from(">i", data, pos)
        pos += 4
    first_flags = None
    if flags & 0x4:
        (first_flags,) = struct.unpack_from(">I", data, pos)
        pos += 4
    samples: list[Sample] = []
    offset = base_offset + data_offset
    for k in range(count):
        duration, size, sflags = default_duration, default_size, default_flags
        if flags & 0x100:
            (duration,) = struct.unpack_from(">I", data, pos)
            pos += 4
        if flags & 0x200:
            (size,) = struct.unpack_from(">I", data, pos)
            pos += 4
        if flags & 0x400:
            (sflags,) = struct.unpack_from(">I", data, pos)
            pos += 4
        if flags & 0x800:
            pos += 4  # composition time offset
        if k == 0 and first_flags is not None:
            sflags = first_flags
        samples.append(Sample(duration, size, sflags, offset))
        offset += size
    return FragmentInfo(seq, track_id, base_time, tuple(samples))


def init_timescale(init: bytes) -> int:
    """The video track's timescale (from ``mdhd``)."""
    mdhd = _require(init, "moov/trak/mdia/mdhd")
    version = init[mdhd.payload_offset]
    pos = mdhd.payload_offset + 4 + (16 if version == 1 else 8)
    (timescale,) = struct.unpack_from(">I", init, pos)
    return timescale


def _require(data: bytes, path: str, start: int = 0) -> Box:
    found = find_box(data, path, start)
    if found is None:
        raise ValueError(f"no {path} box")
    return found
