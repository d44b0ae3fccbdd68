"""FMP4Encoder: real libx264 encode, real libavformat/libavcodec decode, box-level checks."""

from __future__ import annotations

import re
import threading
from fractions import Fraction

import numpy as np
import pytest

from server.media import h264, mp4info
from server.media.decode import decode_fmp4, decode_fmp4_frames
from server.media.fmp4 import FMP4Encoder

FPS = 16


def make_frames(first: int, n: int, width: int = 128, height: int = 96) -> np.ndarray:
    """Frames whose content identifies their global index: a solid colour per index and a
    white 16x16 square that moves 8 px per frame."""
    out = np.empty((n, height, width, 3), np.uint8)  # [n, H, W, 3]
    for k in range(n):
        i = first + k
        out[k] = ((i * 67 + 20) % 256, (i * 113 + 90) % 256, (i * 29 + 160) % 256)
        x = (i * 8) % (width - 16)
        out[k, 8:24, x : x + 16] = 255
    return out


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def encode_stream(chunk_sizes: list[int], **kw: object) -> tuple[FMP4Encoder, bytes, list[bytes], np.ndarray]:
    enc = FMP4Encoder(kw.pop("width", 128), kw.pop("height", 96), kw.pop("fps", FPS), **kw)  # type: ignore[arg-type]
    init = enc.init_segment()
    frags: list[bytes] = []
    first = 0
    for n in chunk_sizes:
        frags.append(enc.encode_chunk(make_frames(first, n, enc.width, enc.height)))
        first += n
    return enc, init, frags, make_frames(0, first, enc.width, enc.height)


def check_frames_match(decoded: list[np.ndarray], source: np.ndarray, first: int = 0) -> None:
    """Each decoded frame is close to its source frame and closer to it than to any other."""
    assert len(decoded) == len(source) - first
    for k, img in enumerate(decoded):
        i = first + k
        assert img.shape == source[i].shape
        assert img.dtype == np.uint8
        err = mae(img, source[i])
        assert err < 4.0, f"frame {i}: mean abs error {err:.2f}"
        src_mean = source[i].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(img.reshape(-1, 3).mean(0), src_mean, atol=3.0)
        nearest = min(range(len(source)), key=lambda j: mae(img, source[j]))
        assert nearest == i, f"decoded frame {i} looks like source frame {nearest}"


def test_source_frames_are_mutually_distinct() -> None:
    src = make_frames(0, 40)
    dists = [mae(src[i], src[j]) for i in range(40) for j in range(i)]
    assert min(dists) > 15  # the order checks below rely on this


def test_init_segment_structure_before_any_frame() -> None:
    enc = FMP4Encoder(128, 96, FPS)
    init = enc.init_segment()
    assert mp4info.top_level_types(init) == ["ftyp", "moov"]
    assert b"iso5" in init[8:32]  # brand that defines default-base-is-moof
    assert mp4info.find_box(init, "moov/mvex/trex") is not None
    assert mp4info.find_box(init, "moov/trak/edts") is None  # no edit list
    for path in ("stts", "stsc", "stco"):
        box = mp4info.find_box(init, f"moov/trak/mdia/minf/stbl/{path}")
        assert box is not None
        assert init[box.payload_offset + 4 : box.end] == b"\x00\x00\x00\x00"  # no samples in moov
    assert mp4info.find_box(init, "moov/trak/mdia/minf/stbl/stsd/avc1") is not None
    assert mp4info.init_timescale(init) * Fraction(1, FPS) == enc.sample_duration
    enc.encode_chunk(make_frames(0, 3))
    assert enc.init_segment() == init  # identical for the whole stream


def _avcc_from_init(init: bytes) -> bytes:
    i = init.index(b"avcC")
    size = int.from_bytes(init[i - 4 : i], "big")
    return init[i + 4 : i - 4 + size]


def test_codec_string_matches_sps_in_init_segment() -> None:
    enc = FMP4Encoder(128, 96, FPS)
    assert re.fullmatch(r"avc1\.[0-9A-F]{6}", enc.codec_string)
    avcc = _avcc_from_init(enc.init_segment())
    assert avcc[0] == 1
    n_sps = avcc[5] & 0x1F
    assert n_sps == 1
    sps_len = int.from_bytes(avcc[6:8], "big")
    sps = avcc[8 : 8 + sps_len]
    assert sps[0] & 0x1F == 7  # an SPS NAL unit
    assert enc.codec_string == f"avc1.{sps[1]:02X}{sps[2]:02X}{sps[3]:02X}"
    assert enc.mime_type == f'video/mp4; codecs="{enc.codec_string}"'


def test_high_profile_preset_writes_valid_avcc_and_decodes() -> None:
    enc, init, frags, src = encode_stream([4, 4], preset="veryfast")
    assert enc.codec_string.startswith("avc1.64")  # High profile
    assert _avcc_from_init(init)[-4:] == bytes([0xFD, 0xF8, 0xF8, 0x00])  # 4:2:0, 8 bit
    check_frames_match(decode_fmp4(init, frags), src)


@pytest.mark.parametrize("chunk_sizes", [[9, 12, 12], [9, 12, 1], [3, 3, 3, 3], [1, 1, 1]])
def test_one_fragment_per_chunk_with_leading_idr(chunk_sizes: list[int]) -> None:
    enc, _init, frags, _ = encode_stream(chunk_sizes)
    assert len(frags) == len(chunk_sizes)
    first = 0
    for seq, (frag, n) in enumerate(zip(frags, chunk_sizes, strict=True), start=1):
        assert mp4info.top_level_types(frag) == ["moof", "mdat"]
        info = mp4info.parse_fragment(frag)
        assert info.sequence_number == seq
        assert info.track_id == 1
        assert len(info.samples) == n
        assert info.base_decode_time == first * enc.sample_duration
        assert [s.duration for s in info.samples] == [enc.sample_duration] * n
        assert [s.is_sync for s in info.samples] == [True] + [False] * (n - 1)
        mdat = next(b for b in mp4info.iter_boxes(frag) if b.type == "mdat")
        assert info.samples[0].data_offset == mdat.payload_offset
        assert info.samples[-1].data_offset + info.samples[-1].size == mdat.end
        for k, sample in enumerate(info.samples):
            data = frag[sample.data_offset : sample.data_offset + sample.size]
            types = [h264.nal_type(nal) for nal in h264.split_length_prefixed(data)]
            assert (h264.NAL_IDR in types) == (k == 0)
            assert h264.NAL_SPS not in types  # parameter sets live only in the init segment
        first += n
    assert enc.frames_encoded == sum(chunk_sizes)
    assert enc.chunks_encoded == len(chunk_sizes)


@pytest.mark.parametrize("chunk_sizes", [[9, 12, 12], [9, 12, 1], [3, 3]])
def test_full_stream_decodes_in_order_with_contiguous_times(chunk_sizes: list[int]) -> None:
    _, init, frags, src = encode_stream(chunk_sizes)
    decoded = decode_fmp4_frames(init, frags)
    check_frames_match([d.image for d in decoded], src)
    assert [d.time * FPS for d in decoded] == list(range(len(src)))
    starts = set(np.cumsum([0, *chunk_sizes[:-1]]).tolist())
    assert [d.key_frame for d in decoded] == [i in starts for i in range(len(src))]


def test_late_joiner_decodes_any_suffix_of_fragments() -> None:
    sizes = [9, 12, 12, 12]
    _, init, frags, src = encode_stream(sizes)
    for k in range(1, len(frags) + 1):
        first = sum(sizes[: len(sizes) - k])
        decoded = decode_fmp4_frames(init, frags[-k:])
        check_frames_match([d.image for d in decoded], src, first)
        assert [d.time * FPS for d in decoded] == list(range(first, len(src)))
        assert decoded[0].key_frame


def test_each_fragment_decodes_alone() -> None:
    sizes = [9, 12, 5]
    _, init, frags, src = encode_stream(sizes)
    first = 0
    for frag, n in zip(frags, sizes, strict=True):
        decoded = decode_fmp4(init, [frag])
        check_frames_match(decoded, src[: first + n], first)
        first += n


def test_no_chunk_delay_fragment_is_complete_when_returned() -> None:
    # The first chunk's fragment, taken before the encoder sees anything else, holds all of it.
    enc = FMP4Encoder(128, 96, FPS)
    frag = enc.encode_chunk(make_frames(0, 9))
    check_frames_match(decode_fmp4(enc.init_segment(), [frag]), make_frames(0, 9))


@pytest.mark.parametrize("fps", [24, 25, 30, Fraction(30000, 1001), 7])
def test_other_frame_rates_have_exact_integer_durations(fps: int | Fraction) -> None:
    enc, init, frags, _src = encode_stream([4, 3], fps=fps)
    assert Fraction(enc.sample_duration, enc.timescale) == Fraction(1) / Fraction(fps)
    decoded = decode_fmp4_frames(init, frags)
    assert [d.time * fps for d in decoded] == list(range(7))


def test_large_frame_832x480() -> None:
    _enc, init, frags, src = encode_stream([3, 2], width=832, height=480)
    decoded = decode_fmp4(init, frags)
    assert decoded[0].shape == (480, 832, 3)
    check_frames_match(decoded, src)


def test_odd_size_is_padded_to_even() -> None:
    enc = FMP4Encoder(33, 17, FPS)
    assert (enc.coded_width, enc.coded_height) == (34, 18)
    src = make_frames(0, 3, 33, 17)
    decoded = decode_fmp4(enc.init_segment(), [enc.encode_chunk(src)])
    assert [d.shape for d in decoded] == [(18, 34, 3)] * 3
    for img, s in zip(decoded, src, strict=True):
        assert mae(img[:17, :33], s) < 6.0
        assert mae(img[17, :33], s[16]) < 8.0  # padding repeats the last row


def test_rate_control_options() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (16, 96, 128, 3), dtype=np.uint8)  # 4 chunks of 4 frames
    sizes: dict[str, list[int]] = {}
    for name, kw in {
        "crf18": {"crf": 18},
        "crf40": {"crf": 40},
        "abr": {"bitrate": 200_000},
        "capped": {"crf": 18, "max_bitrate": 300_000},
    }.items():
        enc = FMP4Encoder(128, 96, FPS, **kw)  # type: ignore[arg-type]
        frags = [enc.encode_chunk(noisy[i : i + 4]) for i in range(0, 16, 4)]
        assert len(decode_fmp4(enc.init_segment(), frags)) == 16
        sizes[name] = [len(f) for f in frags]
    assert sum(sizes["crf40"]) < sum(sizes["crf18"]) / 2
    assert sum(sizes["capped"]) < sum(sizes["crf18"]) / 2
    # 200 kbit/s for 4 frames at 16 fps is 6.25 kB per chunk; once the initial VBV buffer is
    # spent (first chunk) the average bitrate mode stays near it.
    target = 200_000 / 8 * 4 / FPS
    assert all(size < 2 * target for size in sizes["abr"][1:])
    assert min(sizes["crf18"]) > 4 * target


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="minimum"):
        FMP4Encoder(8, 96, FPS)
    with pytest.raises(ValueError, match="fps"):
        FMP4Encoder(128, 96, 0)
    enc = FMP4Encoder(128, 96, FPS)
    with pytest.raises(ValueError, match="at least one"):
        enc.encode_chunk(np.zeros((0, 96, 128, 3), np.uint8))
    with pytest.raises(ValueError, match="encoder is"):
        enc.encode_chunk(np.zeros((2, 64, 128, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_chunk(np.zeros((2, 96, 128, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_chunk(np.zeros((96, 128, 3), np.uint8))
    assert enc.frames_encoded == 0


def test_non_contiguous_input_is_accepted() -> None:
    enc = FMP4Encoder(128, 96, FPS)
    src = make_frames(0, 4)
    view = np.ascontiguousarray(src[:, ::-1])[:, ::-1]  # negative strides
    assert not view.flags.c_contiguous
    check_frames_match(decode_fmp4(enc.init_segment(), [enc.encode_chunk(view)]), src)


def test_close_and_context_manager() -> None:
    with FMP4Encoder(128, 96, FPS) as enc:
        enc.encode_chunk(make_frames(0, 2))
    with pytest.raises(RuntimeError, match="closed"):
        enc.encode_chunk(make_frames(2, 2))
    enc.close()  # idempotent
    assert len(enc.init_segment()) > 0  # the stream description stays readable


def test_concurrent_use_is_refused_not_corrupting() -> None:
    enc = FMP4Encoder(128, 96, FPS)
    entered = threading.Event()
    release = threading.Event()
    original = enc._encode_locked

    def slow_encode(frames: np.ndarray) -> bytes:
        entered.set()
        release.wait(5)
        return original(frames)

    enc._encode_locked = slow_encode  # type: ignore[method-assign]
    result: list[bytes] = []
    worker = threading.Thread(target=lambda: result.append(enc.encode_chunk(make_frames(0, 3))))
    worker.start()
    assert entered.wait(5)
    with pytest.raises(RuntimeError, match="two threads"):
        enc.encode_chunk(make_frames(3, 3))
    release.set()
    worker.join(5)
    assert len(result) == 1
    assert enc.frames_encoded == 3
    check_frames_match(decode_fmp4(enc.init_segment(), result), make_frames(0, 3))


async def test_encoding_from_asyncio_worker_thread() -> None:
    import asyncio

    enc = FMP4Encoder(128, 96, FPS)
    frags = [await asyncio.to_thread(enc.encode_chunk, make_frames(i * 4, 4)) for i in range(3)]
    check_frames_match(decode_fmp4(enc.init_segment(), frags), make_frames(0, 12))


def test_level_option_is_written_to_sps_and_codec_string() -> None:
    enc = FMP4Encoder(128, 96, FPS, level="3.1")
    assert enc.codec_string.endswith("1F")  # level_idc 31
    frag = enc.encode_chunk(make_frames(0, 3))
    check_frames_match(decode_fmp4(enc.init_segment(), [frag]), make_frames(0, 3))


def test_encoder_refuses_to_continue_after_a_failed_chunk() -> None:
    enc = FMP4Encoder(128, 96, FPS)
    enc.encode_chunk(make_frames(0, 3))

    class Failing:
        def encode(self, frame: object) -> list[object]:
            raise OSError("simulated x264 failure")

    real_ctx = enc._ctx
    enc._ctx = Failing()
    with pytest.raises(OSError, match="simulated"):
        enc.encode_chunk(make_frames(3, 3))
    enc._ctx = real_ctx
    with pytest.raises(RuntimeError, match="failed on an earlier chunk"):
        enc.encode_chunk(make_frames(3, 3))
    assert enc.frames_encoded == 3


def test_libav_demuxer_and_decoder_log_no_warnings() -> None:
    import av.logging

    _, init, frags, _src = encode_stream([9, 12, 1])
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture(True) as logs:
            decoded = decode_fmp4(init, frags[1:])
    finally:
        av.logging.set_level(previous)
    assert len(decoded) == 13
    assert [entry for entry in logs if entry[0] <= av.logging.WARNING] == []
