"""Shape and size of objects the frame border cuts in every frame (an endless stream's wrap)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data.layout import Track
from engine.data.render import RenderConfig, render_background, render_frames
from engine.data.shapes import EXTENTS
from engine.data.vocab import SHAPES, SIZES
from engine.data.world import BackgroundSpec, ObjectSpec, SceneSpec
from engine.eval.fidelity import score_detections
from engine.eval.recognise import recognise_clip
from engine.eval.report import evaluate_videos

CFG = RenderConfig()  # 2 s at 16 fps, 128 x 128
BLACK = BackgroundSpec("black", "plain")


def _frames(obj: ObjectSpec, x: float, y: float, vy: float) -> np.ndarray:
    r = SIZES[str(obj.size)] * CFG.width
    bg = render_background(BLACK, CFG.width, CFG.height, np.random.default_rng(0))
    return render_frames(bg, (Track(obj, x, y, 0.0, vy, r, 0.0, 0.0),), CFG.times())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", ["medium", "large"])
def test_object_cut_by_the_left_border_throughout(shape: str, size: str) -> None:
    """Moving up with a third of it beyond the left border for the whole clip: no frame shows
    it whole, and its visible part is neither its size nor centred on its own centroid (before
    the border fit: a cut circle read as a square, a cut medium square as small)."""
    obj = ObjectSpec("red", shape, "up", size)
    r = SIZES[size] * CFG.width
    left = EXTENTS[shape][0]
    frames = _frames(obj, x=left * r / 3, y=90.0, vy=-0.12 * CFG.width)
    [det] = recognise_clip(frames, CFG.fps)
    assert det.n_clean == 0
    assert (det.shape, det.size, det.motion) == (shape, size, "up"), det


def test_corner_of_a_square_leaves_its_size_unread() -> None:
    """A square with its centre beyond the bottom-left corner: the visible part is a smaller
    square, so any size from it upwards fits. Shape and colour are scored, size is not, and the
    prompt's other attributes still count."""
    obj = ObjectSpec("green", "square", "still", "medium")
    r = SIZES["medium"] * CFG.width
    frames = _frames(obj, x=-0.3 * r, y=CFG.height + 0.3 * r, vy=0.0)
    [det] = recognise_clip(frames, CFG.fps)
    assert (det.shape, det.size) == ("square", None), det
    assert det.to_dict()["size_frac"] is None
    result = score_detections(SceneSpec((obj,), BLACK), [det])
    assert result.per_attribute["size"] is None
    assert result.per_attribute["shape"] == 1.0 and result.per_attribute["count"] == 1.0


def test_a_missing_object_still_fails_every_attribute() -> None:
    spec = SceneSpec((ObjectSpec("green", "square", "still", "medium"),), BLACK)
    result = score_detections(spec, [])
    assert result.per_attribute["size"] == 0.0 and result.per_attribute["shape"] == 0.0


def test_report_counts_the_objects_at_the_border() -> None:
    """`at_border`: the share of detected objects the border cuts in most of their frames."""
    cut = _frames(ObjectSpec("red", "circle", "up", "medium"), x=5.0, y=90.0, vy=-15.0)
    whole = _frames(ObjectSpec("red", "circle", "up", "medium"), x=64.0, y=90.0, vy=-15.0)
    prompt = "a medium red circle moving up"
    report = evaluate_videos([(cut, prompt), (whole, prompt)])
    assert [v["detected"][0]["inside"] for v in report["videos"]] == [0.0, 1.0]
    assert report["at_border"] == 0.5 and report["empty"] == 0.0


def test_report_counts_the_clips_with_no_object() -> None:
    """`empty`: the share of clips in which nothing is detected -- an object that moved out of
    the frame and did not come back (the world's wrap would have brought it in again)."""
    gone = _frames(ObjectSpec("red", "circle", "still", "medium"), x=64.0, y=-60.0, vy=0.0)  # above the frame
    whole = _frames(ObjectSpec("red", "circle", "up", "medium"), x=64.0, y=90.0, vy=-15.0)
    prompt = "a medium red circle moving up"
    report = evaluate_videos([(gone, prompt), (whole, prompt), (whole, prompt)])
    assert [len(v["detected"]) for v in report["videos"]] == [0, 1, 1]
    assert report["empty"] == pytest.approx(1 / 3) and report["accuracy"]["count"] == pytest.approx(2 / 3)
