"""Recovering colour, shape, size, motion and count from pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.data.dataset import make_clip
from engine.data.layout import Track
from engine.data.render import RenderConfig, render_background, render_frames
from engine.data.vocab import COLOUR_NAMES, GROWTH_RATE, MOTIONS, SHAPES, SIZES
from engine.data.world import BackgroundSpec, ObjectSpec, SceneSpec
from engine.eval.defects import h264_roundtrip, mild_degradation
from engine.eval.fidelity import FidelityTally, match_objects, score_prompt_fidelity
from engine.eval.quality import quality_measures
from engine.eval.recognise import recognise_clip, recognise_tracks, size_class

CFG = RenderConfig()


def _single(obj: ObjectSpec, bg: BackgroundSpec, speed: float = 24.0) -> np.ndarray:
    """One object in the middle of the frame with a motion law built by hand."""
    from engine.data.vocab import DIRECTIONS

    vx, vy = 0.0, 0.0
    if obj.motion in DIRECTIONS:
        dx, dy = DIRECTIONS[str(obj.motion)]
        vx, vy = dx * speed, dy * speed
    elif obj.motion == "bouncing":
        vx, vy = 60.0, -45.0
    rate = {"growing": GROWTH_RATE, "shrinking": -GROWTH_RATE}.get(str(obj.motion), 0.0)
    r = SIZES[str(obj.size)] * 128
    x0 = 64.0 - vx * CFG.duration / 2
    y0 = 64.0 - vy * CFG.duration / 2
    tr = Track(obj, x0, y0, vx, vy, r, rate, -rate * CFG.duration / 2)
    bg_img = render_background(bg, 128, 128, np.random.default_rng(0))
    return render_frames(bg_img, (tr,), CFG.times())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", list(SIZES))
def test_every_shape_and_size(shape: str, size: str) -> None:
    frames = _single(ObjectSpec("green", shape, "still", size), BackgroundSpec("navy", "checkerboard"))
    (obj,) = recognise_clip(frames, CFG.fps)
    assert (obj.shape, obj.size, obj.motion, obj.colour) == (shape, size, "still", "green")


@pytest.mark.parametrize("colour", COLOUR_NAMES)
def test_every_colour_on_every_background(colour: str) -> None:
    for bgc in ("black", "gray", "navy", "maroon", "forest"):
        frames = _single(ObjectSpec(colour, "circle", "still", "small"), BackgroundSpec(bgc, "noise"))
        (obj,) = recognise_clip(mild_degradation(frames, np.random.default_rng(0)), CFG.fps)
        assert obj.colour == colour, bgc


@pytest.mark.parametrize("motion", MOTIONS)
def test_every_motion(motion: str) -> None:
    frames = _single(ObjectSpec("white", "triangle", motion, "medium"), BackgroundSpec("black", "plain"))
    (obj,) = recognise_clip(frames, CFG.fps)
    assert obj.motion == motion


@pytest.mark.parametrize("motion", ["right", "up_left", "down", "bouncing"])
def test_motion_in_steps_is_read_by_direction_and_flagged_as_frozen(motion: str) -> None:
    """A stuttering video (each position held for 4 frames, then a jump: what a VAE that decodes
    a latent frame's 4 pixel frames alike produces) still moves as asked; the stutter is a
    quality defect, caught by the frozen-frame alarm, not a different motion."""
    obj = ObjectSpec("white", "circle", motion, "medium")
    smooth = _single(obj, BackgroundSpec("black", "plain"))
    steps = smooth[(np.arange(len(smooth)) // 4) * 4]
    objs, labels = recognise_tracks(steps, CFG.fps)
    assert [o.motion for o in objs] == [motion]
    spec = SceneSpec((obj,), BackgroundSpec("black", "plain"))
    alarms = quality_measures(steps, labels, objs, spec, match_objects(spec.objects, objs))["alarms"]
    assert alarms["frozen"]


def test_size_class_boundaries() -> None:
    assert size_class(0.10) == "small" and size_class(0.157) == "medium" and size_class(0.247) == "large"
    boundary = math.sqrt(SIZES["small"] * SIZES["medium"])  # geometric mean
    assert size_class(0.98 * boundary) == "small" and size_class(1.02 * boundary) == "medium"


def test_empty_and_noise_frames_have_no_objects() -> None:
    rng = np.random.default_rng(0)
    bg = render_background(BackgroundSpec("gray", "noise"), 128, 128, rng)
    frames = np.broadcast_to(bg, (17, 128, 128, 3)).copy()
    assert recognise_clip(mild_degradation(frames, rng)) == []


def test_two_blobs_of_one_colour_count_as_two() -> None:
    a = Track(ObjectSpec("red", "circle", "still", "small"), 30.0, 40.0, 0.0, 0.0, 9.0, 0.0, 0.0)
    b = Track(ObjectSpec("red", "square", "still", "small"), 95.0, 90.0, 0.0, 0.0, 9.0, 0.0, 0.0)
    bg = render_background(BackgroundSpec("black", "plain"), 128, 128, np.random.default_rng(0))
    objs = recognise_clip(render_frames(bg, (a, b), CFG.times()))
    assert sorted(o.shape for o in objs) == ["circle", "square"]


def _accuracy(n: int, degrade) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    tally = FidelityTally()
    for i in range(n):
        clip = make_clip(i // 2, "train" if i % 2 == 0 else "heldout", seed=42)
        tally.add(score_prompt_fidelity(degrade(clip.frames, i), clip.spec, CFG.fps))
    return tally.accuracy()


def test_accuracy_on_synthetic_clips() -> None:
    acc = _accuracy(40, lambda f, i: f)
    for attr in ("count", "colour", "shape", "size", "motion"):
        assert acc[attr] is not None and acc[attr] >= 0.98, (attr, acc)


def test_accuracy_after_mild_degradation() -> None:
    acc = _accuracy(24, lambda f, i: mild_degradation(f, np.random.default_rng(i)))
    for attr in ("count", "colour", "shape", "size", "motion"):
        assert acc[attr] is not None and acc[attr] >= 0.95, (attr, acc)


def test_accuracy_after_h264_roundtrip() -> None:
    acc = _accuracy(16, lambda f, i: h264_roundtrip(f, CFG.fps, crf=28))
    for attr in ("count", "colour", "shape", "size", "motion"):
        assert acc[attr] is not None and acc[attr] >= 0.95, (attr, acc)


def test_motion_of_an_object_clipped_by_the_frame_border() -> None:
    """A large disc leaving the frame on the left at 0.12 frame widths per second: its visible
    centroid moves at about half that speed; the box's free side gives the true one."""
    fps, size, r = 16.0, 128, 0.247 * 128
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    frames = np.zeros((32, size, size, 3), np.uint8)
    for t in range(32):
        cx = (0.2 - 0.12 * t / fps) * size  # the centre itself leaves the frame at the end
        frames[t][(xx - cx) ** 2 + (yy - 64) ** 2 <= r * r] = (230, 30, 40)
    [obj] = recognise_clip(frames, fps)
    assert obj.motion == "left", obj


def test_jitter_is_not_a_bounce() -> None:
    """A still object whose drawn position wobbles by 1.5-4 px from one latent frame to the next
    (each held for 4 frames, as the tiny model's output does) is still: up to 0.125 frame widths
    per second of back and forth is wobble, well below the slowest bounce."""
    fps, size = 16.0, 128
    wobble = [0.0, 3.0, -1.0, 2.0, -2.0, 1.0, 2.5, -1.0, 0.5]  # px, one per latent frame
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    frames = np.zeros((33, size, size, 3), np.uint8)
    for t in range(33):
        cx = 64.0 + wobble[t // 4]
        frames[t][(xx - cx) ** 2 + (yy - 64) ** 2 <= 20.0**2] = (240, 240, 240)
    [obj] = recognise_clip(frames, fps)
    assert obj.motion == "still", obj


def test_slowest_steepest_bounce_is_a_bounce() -> None:
    """The world's weakest reversal: a bounce at the lowest speed (0.45 frame widths/s) and the
    steepest angle (60 degrees), reflecting on the axis that carries only half of that speed."""
    from engine.data.vocab import BOUNCE_SPEED

    render = RenderConfig(num_frames=24)
    obj = ObjectSpec("white", "circle", "bouncing", "small")
    r = SIZES["small"] * 128
    speed = BOUNCE_SPEED[0] * 128
    vx, vy = -speed * math.cos(math.radians(60)), speed * math.sin(math.radians(60))
    x0 = r + abs(vx) * render.duration / 2  # meets the left border mid-clip
    tr = Track(obj, x0, r + 2.0, vx, vy, r, 0.0, 0.0)
    bg = render_background(BackgroundSpec("black", "plain"), 128, 128, np.random.default_rng(0))
    [det] = recognise_clip(render_frames(bg, (tr,), render.times()), render.fps)
    assert det.motion == "bouncing", det
