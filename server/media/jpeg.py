"""JPEG frames, the fallback media format for clients without Media Source Extensions.

Uses libavcodec's ``mjpeg`` encoder through PyAV (already a dependency), one image per frame:
baseline JPEG, 4:2:0, full-range BT.601 YCbCr (the JFIF convention every decoder assumes).
The encoder has no "quality" knob of its own; it quantises with a fixed qscale (1 best, 31
worst) when ``qmin == qmax``. ``quality`` uses the familiar libjpeg 1..100 scale: it goes
through libjpeg's own scaling curve (5000/q below 50, 200-2q above, in percent) and then to
qscale = scale/12, a factor chosen by matching file size against libjpeg (Pillow) output on
video-like content: quality 95, 90, 85, 75, 50 map to qscale 1, 2, 3, 4, 8 and come out within
~25 % of libjpeg's size at the same quality.

Threading: like the H.264 encoder, one instance per session, used by one thread at a time;
calls block, so run them in a worker thread from asyncio.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter


def quality_to_qscale(quality: int) -> int:
    """libjpeg-style quality (1..100, higher is better) -> mjpeg qscale (31..1)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality  # libjpeg's percent scaling
    return max(1, min(31, int(scale / 12 + 0.5)))


class JPEGEncoder:
    """Encode RGB frames to JPEG images. The codec context is (re)opened per frame size."""

    def __init__(self, quality: int = 85) -> None:
        self.quality = quality
        self.qscale = quality_to_qscale(quality)
        self._ctx: Any = None
        self._size: tuple[int, int] | None = None
        self._pts = 0
        self._reformatter = VideoReformatter()
        self._busy = threading.Lock()

    def _context(self, width: int, height: int) -> Any:
        if self._ctx is None or self._size != (width, height):
            ctx: Any = av.CodecContext.create("mjpeg", "w")
            ctx.width = width
            ctx.height = height
            ctx.pix_fmt = "yuvj420p"  # full-range 4:2:0, as JFIF expects
            ctx.time_base = Fraction(1, 25)  # unused by JPEG, required to open
            ctx.qmin = self.qscale
            ctx.qmax = self.qscale
            ctx.flags |= av.codec.context.Flags.bitexact  # no encoder version comment
            ctx.open()
            self._ctx = ctx
            self._size = (width, height)
        return self._ctx

    def encode_frames(self, frames: np.ndarray) -> list[bytes]:
        """One JPEG per frame of uint8 RGB ``[n, H, W, 3]`` (a single ``[H, W, 3]`` is accepted)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"expected uint8 frames [n, H, W, 3], got {frames.dtype} {frames.shape}")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("JPEGEncoder used from two threads at once; use one per session")
        try:
            ctx = self._context(frames.shape[2], frames.shape[1])
            out: list[bytes] = []
            for rgb in np.ascontiguousarray(frames):
                frame = self._reformatter.reformat(
                    av.VideoFrame.from_numpy_buffer(rgb, format="rgb24"),
                    format="yuvj420p",
                    dst_colorspace=Colorspace.ITU601,
                    dst_color_range=ColorRange.JPEG,
                )
                frame.pts = self._pts
                self._pts += 1
                packets = ctx.encode(frame)
                if len(packets) != 1:
                    raise RuntimeError(f"mjpeg returned {len(packets)} packets for one frame")
                out.append(bytes(packets[0]))
            return out
        finally:
            self._busy.release()

    def close(self) -> None:
        with self._busy:
            self._ctx = None
            self._size = None
