"""Chunk-wise H.264 encoding into fragmented MP4 for Media Source Extensions.

Why the boxes are written here and not by libavformat's mp4 muxer
-----------------------------------------------------------------
The engine hands over video chunk by chunk and each chunk must leave as ONE self-contained
fragment (moof + mdat) the moment it is encoded. The muxer closes fragments on its own schedule:
``frag_keyframe`` cuts when the *next* keyframe arrives (a one-chunk delay), and
``frag_custom`` needs a NULL-packet flush that PyAV does not expose; the muxer also interleaves
and buffers packets, derives durations from the next packet, and writes its moov only when the
header is written. So the encoder talks to libx264 directly through an
``av.CodecContext`` (no container) and frames the output itself with the small box writer in
:mod:`server.media.boxes`. That gives exact control over the three things MSE cares about:

* the init segment is built from the SPS/PPS that libx264 produces when it is opened with
  ``global_header`` — so it exists before any frame is encoded and never changes;
* every chunk starts with a forced IDR picture (``pict_type = I`` with ``forced-idr``) and
  x264 makes no other keyframes (infinite keyint, no scene-cut detection), so each fragment
  decodes on its own after the init segment and a late joiner can start at any fragment;
* ``tune=zerolatency`` means no B-frames, no lookahead and sliced (not frame) threads, so the
  encoder has zero delay: each ``encode(frame)`` returns that frame's packet, and the fragment is
  complete when the last frame of the chunk has been sent — no flush, no waiting for the next
  chunk. Decode time equals presentation time, so no ``ctts`` and no edit list.

Timestamps are counted here: the fragment's ``tfdt`` is ``frame_index * sample_duration`` in a
timescale where one frame lasts an integer number of ticks (90 kHz when ``fps`` divides it), so
init + all fragments is a valid contiguous file and init + any suffix decodes with the right
times.

Colour: RGB is converted to limited-range BT.709 4:2:0 with swscale and the SPS's VUI says so,
so browsers and PyAV convert back with the same matrix.

Sizes: 4:2:0 needs even dimensions and H.264 can only crop by 2 pixels in 4:2:0, so an odd
width or height is padded to the next even number by repeating the last column/row. The coded
(and decoded) size is then ``coded_width`` x ``coded_height``; ``width``/``height`` stay the
source size. The minimum size is 16x16.

Threading: one encoder per session, used by one thread at a time (it is not re-entrant; a
concurrent call raises RuntimeError rather than corrupting the stream). Calls block for the
encoding time, so from asyncio run them in a worker thread (``asyncio.to_thread`` or an
executor). Creating an encoder costs a few milliseconds; ``close()`` frees the x264 context.
"""

from __future__ import annotations

import math
import threading
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, VideoReformatter

from server.media import boxes, h264

# All the libx264 choices that the fragment structure depends on; see the module docstring.
_X264_STRUCTURE_PARAMS = "keyint=infinite:scenecut=0:bframes=0:rc-lookahead=0:sync-lookahead=0"
_MIN_SIZE = 16


def _timescale(fps: Fraction) -> tuple[int, int]:
    """(ticks per second, ticks per frame) with an integer frame duration."""
    if (90_000 * fps.denominator) % fps.numerator == 0:
        return 90_000, 90_000 * fps.denominator // fps.numerator
    k = math.ceil(1000 / fps.numerator)  # keep at least millisecond resolution
    return fps.numerator * k, fps.denominator * k


class FMP4Encoder:
    """H.264 (libx264) in fragmented MP4: one init segment, then one fragment per chunk.

    Rate control: constant quality ``crf`` by default (optionally capped by ``max_bitrate``,
    bits/s, with a one-second VBV buffer), or an average ``bitrate`` (bits/s) when given, which
    replaces ``crf``. ``threads=0`` lets x264 choose (slice threads, no added delay).
    ``level`` (e.g. ``"3.1"``) pins the H.264 level written in the SPS (and so in
    ``codec_string``); by default x264 picks the lowest level that fits size and frame rate.
    ``fps`` should be exact: pass ``Fraction(30000, 1001)`` rather than ``29.97``.
    ``start_frame`` / ``start_sequence`` continue a stream begun by another encoder (a session
    resumed on another worker): the first fragment's ``tfdt`` is ``start_frame`` frames and its
    ``mfhd`` sequence number ``start_sequence + 1``; the init segment does not depend on them.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float | Fraction,
        *,
        crf: float = 23.0,
        bitrate: int | None = None,
        max_bitrate: int | None = None,
        preset: str = "ultrafast",
        threads: int = 0,
        level: str | None = None,
        start_frame: int = 0,
        start_sequence: int = 0,
    ) -> None:
        if start_frame < 0 or start_sequence < 0:
            raise ValueError("start_frame and start_sequence must be >= 0")
        if width < _MIN_SIZE or height < _MIN_SIZE:
            raise ValueError(f"frame size {width}x{height} is below the minimum {_MIN_SIZE}x{_MIN_SIZE}")
        fps = Fraction(fps).limit_denominator(1001)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.width = width
        self.height = height
        self.coded_width = width + (width & 1)
        self.coded_height = height + (height & 1)
        self.fps = fps
        self.timescale, self.sample_duration = _timescale(fps)

        ctx: Any = av.CodecContext.create("libx264", "w")
        ctx.width = self.coded_width
        ctx.height = self.coded_height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = 1 / fps
        ctx.framerate = fps
        ctx.gop_size = 1 << 30  # overridden by keyint=infinite; avoids libavcodec's default of 12
        ctx.max_b_frames = 0
        ctx.thread_count = threads
        ctx.flags |= av.codec.context.Flags.global_header  # SPS/PPS in extradata, not in-band
        # Written to the SPS VUI so decoders use the matrix the frames are converted with.
        ctx.colorspace = 1  # AVCOL_SPC_BT709 (PyAV's Colorspace enum is swscale's numbering)
        ctx.color_primaries = ColorPrimaries.BT709
        ctx.color_trc = ColorTrc.BT709
        ctx.color_range = ColorRange.MPEG
        options = {"preset": preset, "tune": "zerolatency", "forced-idr": "1"}
        if level is not None:
            options["level"] = level
        x264_params = _X264_STRUCTURE_PARAMS
        if bitrate is not None:
            ctx.bit_rate = int(bitrate)
            x264_params += f":vbv-maxrate={(max_bitrate or bitrate) // 1000}"
            x264_params += f":vbv-bufsize={(max_bitrate or bitrate) // 1000}"
        else:
            options["crf"] = f"{crf:g}"
            if max_bitrate is not None:
                x264_params += f":vbv-maxrate={max_bitrate // 1000}:vbv-bufsize={max_bitrate // 1000}"
        options["x264-params"] = x264_params
        ctx.options = options
        ctx.open()
        self._ctx: Any = ctx

        self._params = h264.parameter_sets_from_extradata(bytes(ctx.extradata))
        track = boxes.VideoTrack(
            width=self.coded_width,
            height=self.coded_height,
            timescale=self.timescale,
            sample_duration=self.sample_duration,
            avcc=h264.avcc_record(self._params),
        )
        self._init = boxes.init_segment(track)
        self._next_frame = start_frame
        self._sequence = start_sequence
        self._reformatter = VideoReformatter()
        self._busy = threading.Lock()
        self._closed = False
        self._failed = False

    # -- stream description ----------------------------------------------------------------

    @property
    def codec_string(self) -> str:
        """RFC 6381 codec parameter from the SPS, e.g. ``avc1.42C01E``."""
        return h264.codec_string(self._params)

    @property
    def mime_type(self) -> str:
        """Full type for ``MediaSource.isTypeSupported`` / ``addSourceBuffer``."""
        return f'video/mp4; codecs="{self.codec_string}"'

    @property
    def frames_encoded(self) -> int:
        """Index of the next frame; equals the number of frames encoded so far."""
        return self._next_frame

    @property
    def chunks_encoded(self) -> int:
        return self._sequence

    def init_segment(self) -> bytes:
        """``ftyp`` + ``moov``; the same bytes for the whole life of the encoder."""
        return self._init

    # -- encoding --------------------------------------------------------------------------

    def encode_chunk(self, frames: np.ndarray) -> bytes:
        """Encode ``frames`` (uint8 RGB ``[n, H, W, 3]``, n >= 1) into one ``moof`` + ``mdat``.

        The first frame is an IDR picture; the fragment's decode times continue from the
        previous chunk. Blocks for the encoding time.
        """
        frames = self._check_frames(frames)
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("FMP4Encoder used from two threads at once; use one per session")
        try:
            if self._closed:
                raise RuntimeError("FMP4Encoder is closed")
            if self._failed:
                raise RuntimeError("FMP4Encoder failed on an earlier chunk; create a new one")
            try:
                return self._encode_locked(frames)
            except BaseException:
                # Part of the chunk may be inside x264 already: the stream cannot go on.
                self._failed = True
                raise
        finally:
            self._busy.release()

    def _encode_locked(self, frames: np.ndarray) -> bytes:
        samples: list[bytes] = []
        keyframes: list[bool] = []
        for i, rgb in enumerate(frames):
            # Wrap the array without a copy; the cached reformatter keeps one swscale context.
            rgb_frame = av.VideoFrame.from_numpy_buffer(rgb, format="rgb24")
            frame = self._reformatter.reformat(
                rgb_frame, format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
            )
            frame.pts = self._next_frame + i
            if i == 0:
                frame.pict_type = PictureType.I  # with forced-idr: an IDR picture
            packets = self._ctx.encode(frame)
            if len(packets) != 1:
                # Zero-latency x264 returns each frame's packet from its own encode call; anything
                # else would mean a delayed frame leaking into the next fragment.
                raise RuntimeError(f"encoder returned {len(packets)} packets for one frame")
            nals = h264.split_annexb(bytes(packets[0]))
            if i == 0 and h264.NAL_IDR not in {h264.nal_type(n) for n in nals}:
                raise RuntimeError("encoder did not start the chunk with an IDR picture")
            samples.append(h264.to_length_prefixed(nals))
            keyframes.append(bool(packets[0].is_keyframe))
        self._sequence += 1
        fragment = boxes.media_fragment(
            sequence_number=self._sequence,
            base_decode_time=self._next_frame * self.sample_duration,
            samples=samples,
            keyframes=keyframes,
            sample_duration=self.sample_duration,
        )
        self._next_frame += len(frames)
        return fragment

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"expected uint8 frames [n, H, W, 3], got {frames.dtype} {frames.shape}")
        n, h, w, _ = frames.shape
        if n < 1:
            raise ValueError("a chunk needs at least one frame")
        if (h, w) != (self.height, self.width):
            raise ValueError(f"frames are {w}x{h}, encoder is {self.width}x{self.height}")
        if (self.coded_height, self.coded_width) != (h, w):
            # Odd size: repeat the last row/column up to the even coded size.
            pad = ((0, 0), (0, self.coded_height - h), (0, self.coded_width - w), (0, 0))
            frames = np.pad(frames, pad, mode="edge")
        return np.ascontiguousarray(frames)

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the x264 context. Idempotent; the encoder is unusable afterwards."""
        with self._busy:
            if self._closed:
                return
            self._closed = True
            self._ctx = None  # PyAV frees the AVCodecContext when the last reference goes

    def __enter__(self) -> FMP4Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
