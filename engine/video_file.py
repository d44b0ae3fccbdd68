"""Writing uint8 RGB frames to an H.264 .mp4 file with PyAV (offline generation, evaluation)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import av
import numpy as np


class Mp4Writer:
    def __init__(self, path: str | Path, width: int, height: int, fps: int, crf: int = 18) -> None:
        self._container = av.open(str(path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast"}

    def write(self, frames: np.ndarray) -> None:
        """frames: uint8 [n, H, W, 3] RGB."""
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
