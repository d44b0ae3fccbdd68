"""`Mp4Recorder`: write a live fMP4 stream to a regular MP4 file.

The protocol makes *init segment + every fragment, concatenated* a valid fragmented MP4
(each fragment's ``tfdt`` places it on one continuous timeline), so recording is appending
bytes to a ``.part`` file as they arrive — cheap, crash-tolerant, and the file is playable
even if the recorder never finishes.  `close` then remuxes it with PyAV (no re-encoding)
into an ordinary MP4 with a ``moov`` index, shifted to start at time 0 (a late joiner's first
fragment starts later), which every player and editor opens.  ``fragmented=True`` keeps the
fragmented file instead.

Lost fragments (a slow viewer, a reconnect) leave a hole in time, not a broken file: the
timestamps jump and the frame count is that of the frames received (`gaps` lists them).  A
*different* init segment mid-stream (a new encoder after a worker failover) cannot be
appended to the same track, and a session that restarted at frame 0 (a takeover without a
snapshot) cannot continue the timeline, so the recording then goes on in ``NAME.1.mp4``,
``NAME.2.mp4``...
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rollcast_client.framing import MediaChunk, MediaKind


@dataclass
class RecordingSummary:
    paths: list[Path]
    frames: int
    chunks: int
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (expected first frame, got)


class Mp4Recorder:
    """Feed it `MediaChunk`s (fMP4 kinds; JPEG is refused) with `write`, then `close`."""

    def __init__(self, path: str | os.PathLike[str], *, fragmented: bool = False) -> None:
        self.path = Path(path)
        self.fragmented = fragmented
        self.frames = 0
        self.chunks = 0
        self.gaps: list[tuple[int, int]] = []
        self._init: bytes | None = None
        self._part = 0
        self._file: IO[bytes] | None = None
        self._parts: list[list[Any]] = []  # [.part file, final path, fragments written]
        self._next_frame: int | None = None

    def _final_path(self, index: int) -> Path:
        if index == 0:
            return self.path
        return self.path.with_name(f"{self.path.stem}.{index}{self.path.suffix or '.mp4'}")

    def write(self, media: MediaChunk) -> None:
        """Append one message (blocking file I/O of one fragment: a few kB)."""
        if media.kind is MediaKind.JPEG:
            raise ValueError("Mp4Recorder records fMP4 streams; create the session with format='fmp4'")
        if media.kind is MediaKind.INIT:
            if media.payload == self._init:
                return
            self._start_part(media.payload)
            return
        if self._file is None:
            raise ValueError(f"fragment of chunk {media.chunk_index} before any init segment")
        if self._next_frame is not None and media.first_frame < self._next_frame:
            assert self._init is not None  # the session restarted at frame 0: a new file
            self._start_part(self._init)
        elif self._next_frame is not None and media.first_frame != self._next_frame:
            self.gaps.append((self._next_frame, media.first_frame))
        self._next_frame = media.first_frame + media.frame_count
        self._file.write(media.payload)
        self._file.flush()
        self._parts[-1][2] += 1
        self.frames += media.frame_count
        self.chunks += 1

    def _start_part(self, init: bytes) -> None:
        self._close_file()
        final = self._final_path(len(self._parts))
        part = final.with_name(final.name + ".part")
        final.parent.mkdir(parents=True, exist_ok=True)
        self._file = part.open("wb")
        self._file.write(init)
        self._parts.append([part, final, 0])
        self._init = init
        self._next_frame = None

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> RecordingSummary:
        """Finish every part: remux to a regular MP4 (or keep it fragmented).  Blocking."""
        self._close_file()
        paths: list[Path] = []
        for part, final, fragments in self._parts:
            if self.fragmented or fragments == 0:
                os.replace(part, final)
            else:
                remux_to_mp4(part, final)
                part.unlink()
            paths.append(final)
        self._parts = []
        return RecordingSummary(paths, self.frames, self.chunks, list(self.gaps))


def remux_to_mp4(src_path: Path, dst_path: Path) -> None:
    """Copy the H.264 packets of a fragmented MP4 into a regular one, starting at time 0."""
    import av

    tmp = dst_path.with_name(dst_path.name + ".tmp")
    with av.open(str(src_path), mode="r") as src, av.open(str(tmp), mode="w", format="mp4") as dst:
        in_stream = src.streams.video[0]
        if hasattr(dst, "add_stream_from_template"):  # PyAV >= 13
            out_stream = dst.add_stream_from_template(in_stream)
        else:  # pragma: no cover - older PyAV
            out_stream = dst.add_stream(template=in_stream)  # type: ignore[call-overload]
        offset: int | None = None
        for packet in src.demux(in_stream):
            if packet.dts is None:  # the demuxer's final flush packet
                continue
            if offset is None:
                offset = packet.dts
            packet.dts -= offset
            if packet.pts is not None:
                packet.pts -= offset
            packet.stream = out_stream
            dst.mux(packet)
    os.replace(tmp, dst_path)
