"""Rasteriser: backgrounds and anti-aliased shapes into uint8 RGB frames [T, H, W, 3].

Speed matters (the dataset renders clips on the fly on CPU), so each object is drawn into a
small crop around it, vectorised over all frames at once: the coverage of one object for the
whole clip is a single [T, h, w] numpy computation, followed by a cheap per-frame blend.
Backgrounds are static per scene (the evaluator's flicker measure relies on that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .layout import Track, sample_tracks, state_at
from .shapes import bounding_radius, coverage
from .vocab import BACKGROUND_COLOURS
from .world import BackgroundSpec, SceneSpec

TEXTURE_AMPLITUDE = 14.0  # luminance offset of textures, uint8 levels (low contrast on purpose)


@dataclass(frozen=True)
class RenderConfig:
    width: int = 128
    height: int = 128
    fps: float = 16.0
    num_frames: int = 33  # clip length; 33 frames = 2 s at 16 fps (+1 so 2 s of motion is spanned)

    @property
    def duration(self) -> float:
        return (self.num_frames - 1) / self.fps

    def times(self, start: int = 0, n: int | None = None) -> np.ndarray:
        count = self.num_frames if n is None else n
        return (start + np.arange(count)) / self.fps


@dataclass(frozen=True, eq=False)
class Scene:
    """A renderable scene: the semantic spec, concrete tracks and a background image [H, W, 3]."""

    spec: SceneSpec
    tracks: tuple[Track, ...]
    background: np.ndarray = field(repr=False)


def render_background(bg: BackgroundSpec, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A static background image [H, W, 3] uint8 (plain colour plus a low-contrast texture)."""
    base = np.array(BACKGROUND_COLOURS[str(bg.colour)], dtype=np.float32)
    unit = min(width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    texture = str(bg.texture)
    if texture == "plain":
        offset = np.zeros((height, width), np.float32)
    elif texture == "checkerboard":
        cell = unit / 8.0
        px, py = rng.uniform(0, cell, size=2)
        parity = (np.floor((xs + px) / cell) + np.floor((ys + py) / cell)) % 2
        offset = (parity * 2.0 - 1.0) * TEXTURE_AMPLITUDE
    elif texture == "stripes":
        period = unit / 8.0
        ang = math.radians(45.0 * rng.integers(4))
        phase = rng.uniform(0, 2 * math.pi)
        s = np.sin(2 * math.pi * (xs * math.cos(ang) + ys * math.sin(ang)) / period + phase)
        offset = np.clip(3.0 * s, -1.0, 1.0) * TEXTURE_AMPLITUDE
    elif texture == "noise":
        g = 8
        grid = rng.uniform(-1.0, 1.0, size=(g + 1, g + 1)).astype(np.float32) * 1.6 * TEXTURE_AMPLITUDE
        fx, fy = xs / width * g, ys / height * g
        ix, iy = np.minimum(fx.astype(int), g - 1), np.minimum(fy.astype(int), g - 1)
        wx, wy = fx - ix, fy - iy
        top = grid[iy, ix] * (1 - wx) + grid[iy, ix + 1] * wx
        bot = grid[iy + 1, ix] * (1 - wx) + grid[iy + 1, ix + 1] * wx
        offset = top * (1 - wy) + bot * wy
    else:
        raise ValueError(f"unknown texture {texture!r}")
    img = base[None, None, :] + offset[:, :, None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def draw_tracks(frames: np.ndarray, tracks: tuple[Track, ...], times: np.ndarray) -> None:
    """Composite ``tracks`` in order (later ones on top) into ``frames`` [T, H, W, 3] in place."""
    _n_t, height, width, _ = frames.shape
    for tr in tracks:
        st = state_at(tr, times, width, height)
        idx = np.nonzero(st.alpha > 0)[0]
        if idx.size == 0:
            continue
        shape = str(tr.obj.shape)
        cx, cy = st.cx[idx], st.cy[idx]
        r = st.radius[idx].astype(np.float32)
        half = math.ceil(float((bounding_radius(shape) * r).max()) + 1.5)
        size = 2 * half + 1
        x0 = np.floor(cx).astype(np.int64) - half  # [n]
        y0 = np.floor(cy).astype(np.int64) - half
        grid = np.arange(size, dtype=np.float32) + 0.5
        gx = (x0 - cx).astype(np.float32)[:, None] + grid[None, :]  # [n, size]
        gy = (y0 - cy).astype(np.float32)[:, None] + grid[None, :]
        dx = np.broadcast_to(gx[:, None, :], (idx.size, size, size))
        dy = np.broadcast_to(gy[:, :, None], (idx.size, size, size))
        cov = coverage(shape, dx, dy, r[:, None, None])  # [n, size, size]
        cov *= st.alpha[idx].astype(np.float32)[:, None, None]
        rgb = np.array(tr.rgb, dtype=np.float32)
        for k, t in enumerate(idx):
            xa, ya = max(0, -int(x0[k])), max(0, -int(y0[k]))
            xb, yb = min(size, width - int(x0[k])), min(size, height - int(y0[k]))
            if xa >= xb or ya >= yb:
                continue
            a = cov[k, ya:yb, xa:xb, None]
            sl = (t, slice(int(y0[k]) + ya, int(y0[k]) + yb), slice(int(x0[k]) + xa, int(x0[k]) + xb))
            region = frames[sl].astype(np.float32)
            frames[sl] = (region + (rgb - region) * a + 0.5).astype(np.uint8)


def render_frames(background: np.ndarray, tracks: tuple[Track, ...], times: np.ndarray) -> np.ndarray:
    """Render frames [T, H, W, 3] uint8. ``background`` is [H, W, 3] or per-frame [T, H, W, 3]."""
    n = len(times)
    if background.ndim == 3:
        frames = np.broadcast_to(background, (n, *background.shape)).copy()
    else:
        frames = np.ascontiguousarray(background, dtype=np.uint8).copy()
    draw_tracks(frames, tracks, np.asarray(times, dtype=np.float64))
    return frames


def make_scene(spec: SceneSpec, rng: np.random.Generator, config: RenderConfig, clip: bool = True) -> Scene:
    """Place a complete spec: tracks obey the clip rules when ``clip`` (see layout.py)."""
    if not spec.is_complete():
        raise ValueError("make_scene needs a complete SceneSpec (use world.complete_spec)")
    times = config.times() if clip else None
    tracks = sample_tracks(spec.objects, rng, config.width, config.height, times)
    assert spec.background is not None
    bg = render_background(spec.background, config.width, config.height, rng)
    return Scene(spec, tracks, bg)


def render_scene(scene: Scene, config: RenderConfig, start: int = 0, n: int | None = None) -> np.ndarray:
    """Frames ``start .. start+n`` (default: one clip) of ``scene``: [n, H, W, 3] uint8."""
    return render_frames(scene.background, scene.tracks, config.times(start, n))
