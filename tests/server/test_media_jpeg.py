"""JPEGEncoder: real mjpeg encode and decode, colours, quality, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from server.media.decode import decode_jpeg
from server.media.jpeg import JPEGEncoder, quality_to_qscale

COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [128, 64, 32], [10, 200, 90]],
    np.uint8,
)


def textured(n: int, height: int = 96, width: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    out = np.empty((n, height, width, 3), np.uint8)  # [n, H, W, 3]
    for i in range(n):
        out[i, ..., 0] = (x * 2 + i * 20) % 256
        out[i, ..., 1] = (y * 3 + i * 7) % 256
        out[i, ..., 2] = ((x + y) * 4) % 256
    return out


def test_round_trip_solid_colours() -> None:
    frames = np.broadcast_to(COLOURS[:, None, None, :], (len(COLOURS), 48, 64, 3)).copy()
    images = JPEGEncoder(85).encode_frames(frames)
    assert len(images) == len(COLOURS)
    for data, colour in zip(images, COLOURS, strict=True):
        assert data[:2] == b"\xff\xd8"  # SOI
        assert data[-2:] == b"\xff\xd9"  # EOI
        img = decode_jpeg(data)
        assert img.shape == (48, 64, 3)
        np.testing.assert_allclose(img.reshape(-1, 3).mean(0), colour, atol=3.0)


def test_round_trip_textured_frames_keep_order() -> None:
    src = textured(4)
    images = [decode_jpeg(d) for d in JPEGEncoder(90).encode_frames(src)]
    for i, img in enumerate(images):
        errs = [np.abs(img.astype(int) - s.astype(int)).mean() for s in src]
        assert errs[i] < 6.0
        assert int(np.argmin(errs)) == i


def test_quality_controls_size_and_error() -> None:
    noise = np.random.default_rng(0).integers(-40, 40, (1, 96, 128, 3))
    src = np.clip(textured(1).astype(int) + noise, 0, 255).astype(np.uint8)
    low, high = JPEGEncoder(10).encode_frames(src)[0], JPEGEncoder(95).encode_frames(src)[0]
    assert len(low) < len(high) / 2
    err = {
        q: np.abs(decode_jpeg(d).astype(int) - src[0].astype(int)).mean() for q, d in ((10, low), (95, high))
    }
    assert err[95] < err[10]


def test_quality_mapping() -> None:
    assert quality_to_qscale(100) == 1
    assert quality_to_qscale(1) == 31
    qs = [quality_to_qscale(q) for q in range(1, 101)]
    assert qs == sorted(qs, reverse=True)
    for bad in (0, 101):
        with pytest.raises(ValueError, match="quality"):
            JPEGEncoder(bad)


def test_single_frame_and_size_change() -> None:
    enc = JPEGEncoder(80)
    one = enc.encode_frames(textured(1)[0])
    assert len(one) == 1
    assert decode_jpeg(one[0]).shape == (96, 128, 3)
    other = enc.encode_frames(textured(2, 40, 30))
    assert [decode_jpeg(d).shape for d in other] == [(40, 30, 3)] * 2


def test_bad_input() -> None:
    enc = JPEGEncoder(80)
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_frames(np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_frames(np.zeros((1, 16, 16), np.uint8))
