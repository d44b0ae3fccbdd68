"""Optional decoding of received media into RGB frames with PyAV (``decode=True``).

Every fMP4 fragment starts with an IDR picture, so *init segment + one fragment* is a small
complete MP4 that decodes on its own: the decoder keeps the latest init segment and opens
each fragment behind it.  That costs one demuxer per chunk (a few hundred microseconds) and
needs no state across chunks, so a lost fragment never corrupts the next one.  JPEG frames
are decoded one by one.  Frames come out as numpy ``uint8 [H, W, 3]`` (RGB).
"""

from __future__ import annotations

import io
from typing import Any

from rollcast_client.framing import MediaChunk, MediaKind


class FrameDecoder:
    """Turns media messages into RGB frames; call `decode` off the event loop (it blocks)."""

    def __init__(self) -> None:
        import av  # PyAV: only needed when decoding

        self._av = av
        self._init: bytes | None = None

    def decode(self, chunk: MediaChunk) -> list[Any]:
        if chunk.kind is MediaKind.INIT:
            self._init = chunk.payload
            return []
        if chunk.kind is MediaKind.JPEG:
            return self._decode_container(chunk.payload, "jpeg_pipe")
        if self._init is None:
            raise ValueError(f"fragment of chunk {chunk.chunk_index} arrived before an init segment")
        return self._decode_container(self._init + chunk.payload, "mp4")

    def _decode_container(self, data: bytes, fmt: str) -> list[Any]:
        with self._av.open(io.BytesIO(data), mode="r", format=fmt) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
