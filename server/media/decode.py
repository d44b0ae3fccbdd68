"""Decoding helpers for tests and clients: fMP4 (init + fragments) and JPEG back to RGB.

Deliberately dependency-light (PyAV + numpy, nothing from the rest of the server) so that the
Python client can carry the same few lines. fMP4 goes through libavformat's own MP4 demuxer,
not through this package's box reader, so decoding is an independent check of what the
encoder wrote.

Because every fragment starts with an IDR picture, ``decode_fmp4(init, [fragment])`` decodes
one fragment on its own; a client can therefore decode each fragment as it arrives (opening a
demuxer for one fragment costs about a millisecond) instead of keeping one open over a growing
buffer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np


@dataclass(frozen=True)
class DecodedFrame:
    image: np.ndarray  # uint8 RGB [H, W, 3]
    time: Fraction  # presentation time in seconds (exact: pts * time_base)
    key_frame: bool


def decode_fmp4_frames(init: bytes, fragments: list[bytes]) -> list[DecodedFrame]:
    """Decode ``init + fragments`` (in order) into frames with their presentation times."""
    data = bytes(init) + b"".join(bytes(f) for f in fragments)
    out: list[DecodedFrame] = []
    container: Any = av.open(io.BytesIO(data), mode="r", format="mp4")
    with container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            time = Fraction(frame.pts) * frame.time_base
            out.append(DecodedFrame(frame.to_ndarray(format="rgb24"), time, bool(frame.key_frame)))
    return out


def decode_fmp4(init: bytes, fragments: list[bytes]) -> list[np.ndarray]:
    """Decode ``init + fragments`` into uint8 RGB frames ``[H, W, 3]``, in presentation order."""
    return [f.image for f in decode_fmp4_frames(init, fragments)]


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode one JPEG image to uint8 RGB ``[H, W, 3]``."""
    ctx: Any = av.CodecContext.create("mjpeg", "r")
    frames = ctx.decode(av.Packet(bytes(data)))
    frames += ctx.decode(None)
    if len(frames) != 1:
        raise ValueError(f"expected one JPEG image, decoded {len(frames)}")
    return frames[0].to_ndarray(format="rgb24")
