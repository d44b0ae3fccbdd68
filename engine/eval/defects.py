"""Degradations and injected defects, all uint8 [T, H, W, 3] -> uint8 [T, H, W, 3].

Two uses: *mild* degradations model what a real pipeline does to clean frames (VAE smoothing,
H.264) and the evaluator must stay accurate under them; *defects* model generation failures
(blur, colour drift, frozen frames, flicker) and the quality measures must flag them.
"""

from __future__ import annotations

import io
import math

import av
import numpy as np


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur per frame and channel (reflect padding), as shifted sums: for
    kernels this small that is much faster on CPU than a convolution call."""
    if sigma <= 0:
        return frames.copy()
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    img = frames.astype(np.float32)
    h, w = img.shape[1], img.shape[2]
    p = np.pad(img, ((0, 0), (radius, radius), (0, 0), (0, 0)), mode="reflect")
    img = sum(float(wgt) * p[:, i : i + h] for i, wgt in enumerate(k))  # type: ignore[assignment]
    p = np.pad(img, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode="reflect")
    img = sum(float(wgt) * p[:, :, i : i + w] for i, wgt in enumerate(k))  # type: ignore[assignment]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def add_noise(frames: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of ``sigma`` uint8 levels."""
    noisy = frames.astype(np.float32) + rng.normal(0.0, sigma, size=frames.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def mild_degradation(
    frames: np.ndarray, rng: np.random.Generator, sigma: float = 0.8, noise: float = 3.0
) -> np.ndarray:
    """The "H.264-like" condition of the validation: blur sigma 0.8 px + noise sigma 3 levels."""
    return add_noise(gaussian_blur(frames, sigma), noise, rng)


def h264_roundtrip(frames: np.ndarray, fps: float = 16.0, crf: int = 28) -> np.ndarray:
    """Encode with libx264 (yuv420p, given CRF) into an in-memory MP4 and decode it back."""
    t_n, h, w, _ = frames.shape
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
        for f in frames:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf, mode="r") as inp:
        decoded = [fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)]
    return np.stack(decoded)[:t_n]


def hue_rotate(frames: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate hue by ``degrees`` about the grey axis (luma-preserving-ish RGB rotation)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    k = 1.0 / 3.0
    r = math.sqrt(k)
    m = np.array(
        [
            [c + (1 - c) * k, (1 - c) * k - r * s, (1 - c) * k + r * s],
            [(1 - c) * k + r * s, c + (1 - c) * k, (1 - c) * k - r * s],
            [(1 - c) * k - r * s, (1 - c) * k + r * s, c + (1 - c) * k],
        ],
        dtype=np.float32,
    )
    out = frames.astype(np.float32) @ m.T
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def freeze(frames: np.ndarray, start: int, length: int) -> np.ndarray:
    """Repeat frame ``start`` over ``[start, start + length)`` (a stalled generator)."""
    out = frames.copy()
    out[start : start + length] = frames[start]
    return out


def flicker(frames: np.ndarray, amplitude: float = 6.0, period: int = 2) -> np.ndarray:
    """Add a global brightness offset alternating between +-amplitude every ``period`` frames."""
    sign = np.where((np.arange(frames.shape[0]) // period) % 2 == 0, 1.0, -1.0).astype(np.float32)
    out = frames.astype(np.float32) + amplitude * sign[:, None, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
