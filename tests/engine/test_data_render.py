"""Rasteriser, shapes, clips and tensor conversion."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from engine.data.dataset import make_clip
from engine.data.layout import EDGE_MARGIN, Track
from engine.data.render import RenderConfig, render_background, render_frames
from engine.data.shapes import EXTENTS, coverage
from engine.data.tensors import from_model_output, to_model_input
from engine.data.vocab import BACKGROUND_COLOURS, COLOURS, DIRECTIONS, GROWTH_SPAN, SHAPES
from engine.data.world import BackgroundSpec, ObjectSpec


def test_shapes_have_equal_area_and_centroid_at_origin() -> None:
    r = 20.0
    ys, xs = np.mgrid[-60:60, -60:60].astype(np.float32) + 0.5
    for shape in ("circle", *SHAPES):
        cov = coverage(shape, xs, ys, r)
        area = float(cov.sum())
        assert abs(area - math.pi * r * r) / (math.pi * r * r) < 0.01, shape
        assert abs(float((cov * xs).sum()) / area) < 0.05
        assert abs(float((cov * ys).sum()) / area) < 0.05
        # anti-aliased: there are partial-coverage pixels on the edge
        assert np.count_nonzero((cov > 0.05) & (cov < 0.95)) > 20


def _object_mask(frames: np.ndarray, bg: np.ndarray) -> np.ndarray:
    return np.abs(frames.astype(int) - bg.astype(int)).sum(-1) > 60


def test_render_draws_the_right_colour_and_motion() -> None:
    cfg = RenderConfig()
    bg = render_background(BackgroundSpec("black", "plain"), 128, 128, np.random.default_rng(0))
    for motion, (dx, dy) in DIRECTIONS.items():
        obj = ObjectSpec("orange", "square", motion, "medium")
        tr = Track(obj, 64.0, 64.0, dx * 20.0, dy * 20.0, 14.0, 0.0, 0.0)
        frames = render_frames(bg, (tr,), cfg.times())
        assert frames.shape == (33, 128, 128, 3) and frames.dtype == np.uint8
        assert tuple(frames[0, 64, 64]) == COLOURS["orange"]
        assert tuple(frames[0, 2, 2]) == BACKGROUND_COLOURS["black"]
        m0, m1 = _object_mask(frames[0], bg), _object_mask(frames[-1], bg)
        ys, xs = np.nonzero(m0)
        ye, xe = np.nonzero(m1)
        moved = np.array([xe.mean() - xs.mean(), ye.mean() - ys.mean()])
        assert np.allclose(moved, np.array([dx, dy]) * 40.0, atol=1.0), motion


def test_clips_are_deterministic_and_distinct() -> None:
    a, b = make_clip(5), make_clip(5)
    assert np.array_equal(a.frames, b.frames) and a.caption == b.caption and a.spec == b.spec
    c = make_clip(6)
    assert not np.array_equal(a.frames, c.frames)
    h = make_clip(5, split="heldout")
    assert not np.array_equal(a.frames, h.frames)
    assert make_clip(5, seed=1).caption != a.caption or not np.array_equal(
        make_clip(5, seed=1).frames, a.frames
    )


def _fits(tr: Track, cfg: RenderConfig) -> bool:
    """Whether the frame leaves room for the object's whole travel in a clip (a large triangle
    moving fast horizontally is wider than the frame minus its travel: it must touch a border)."""
    left, top, right, bottom = EXTENTS[str(tr.obj.shape)]
    grow = math.sqrt(GROWTH_SPAN) if tr.growth_rate else 1.0
    room_x = cfg.width - (left + right) * tr.radius * grow - abs(tr.vx) * cfg.duration - 2 * EDGE_MARGIN
    room_y = cfg.height - (top + bottom) * tr.radius * grow - abs(tr.vy) * cfg.duration - 2 * EDGE_MARGIN
    return room_x > 0 and room_y > 0


def test_moving_objects_stay_inside_clips() -> None:
    checked = 0
    for i in range(60):
        clip = make_clip(i)
        for tr in clip.scene.tracks:
            moving = tr.obj.motion in DIRECTIONS or tr.obj.motion in ("growing", "shrinking")
            if moving and _fits(tr, RenderConfig()):
                solo = render_frames(clip.scene.background, (tr,), RenderConfig().times())
                m = _object_mask(solo, clip.scene.background)
                assert not m[:, 0, :].any() and not m[:, -1, :].any()
                assert not m[:, :, 0].any() and not m[:, :, -1].any()
                checked += 1
    assert checked >= 40  # the rule holds for nearly all moving objects


def test_configurable_resolution_and_fps() -> None:
    cfg = RenderConfig(width=96, height=64, fps=8.0, num_frames=9)
    clip = make_clip(0, config=cfg)
    assert clip.frames.shape == (9, 64, 96, 3)


def test_rendering_is_fast() -> None:
    # Brief: 1000 clips of 33 frames well under a minute on one core. 100 clips here, measured in
    # CPU time of this process (the machine is shared, wall time is not ours); ~1 s expected.
    t0 = time.process_time()
    for i in range(100):
        make_clip(1000 + i)
    assert time.process_time() - t0 < 4.0


def test_model_tensor_round_trip() -> None:
    frames = make_clip(1).frames
    x = to_model_input(frames)
    assert x.shape == (3, 33, 128, 128) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor(frames[0, 0, 0], dtype=torch.float32) / 127.5 - 1)
    assert np.array_equal(from_model_output(x), frames)
    batch = to_model_input(np.stack([frames, frames]))
    assert batch.shape == (2, 3, 33, 128, 128)
