"""Prompt-fidelity scoring and the evaluate_videos report."""

from __future__ import annotations

import numpy as np

from engine.data.captions import canonical_caption
from engine.data.dataset import make_clip
from engine.data.world import BackgroundSpec, ObjectSpec, SceneSpec
from engine.eval.fidelity import FidelityTally, match_objects, score_prompt_fidelity
from engine.eval.recognise import recognise_clip
from engine.eval.report import evaluate_videos


def _two_object_clip() -> tuple[np.ndarray, SceneSpec]:
    for i in range(100):
        c = make_clip(i, seed=9)
        if c.spec.count == 2:
            return c.frames, c.spec
    raise AssertionError("no two-object clip")


def test_own_caption_scores_perfectly() -> None:
    clip = make_clip(3, seed=9)
    res = score_prompt_fidelity(clip.frames, clip.caption)
    assert res.overall == 1.0 and res.all_correct
    assert res.per_attribute["count"] == 1.0


def test_wrong_attributes_are_caught_one_by_one() -> None:
    frames, spec = _two_object_clip()
    a, b = spec.objects
    other_colour = next(c for c in ("red", "green", "blue", "white") if c not in (a.colour, b.colour))
    wrong = SceneSpec((ObjectSpec(other_colour, a.shape, a.motion, a.size), b), spec.background)
    res = score_prompt_fidelity(frames, wrong)
    assert res.per_attribute["colour"] == 0.5 and res.per_attribute["shape"] == 1.0
    assert not res.all_correct and res.overall < 1.0
    wrong_motion = "still" if a.motion != "still" else "left"
    res = score_prompt_fidelity(frames, SceneSpec((ObjectSpec(a.colour, a.shape, wrong_motion, a.size), b)))
    assert res.per_attribute["motion"] == 0.5 and res.per_attribute["colour"] == 1.0
    res = score_prompt_fidelity(frames, SceneSpec((a,), spec.background))
    assert res.per_attribute["count"] == 0.0 and res.per_attribute["colour"] == 1.0


def test_unmentioned_attributes_are_not_scored() -> None:
    clip = make_clip(3, seed=9)
    o = clip.spec.objects[0]
    wrong_size = "small" if o.size != "small" else "large"
    res = score_prompt_fidelity(clip.frames, SceneSpec((ObjectSpec(o.colour, o.shape, o.motion, None),)))
    assert res.per_attribute["size"] is None and res.per_attribute.get("background") is None
    res2 = score_prompt_fidelity(
        clip.frames, SceneSpec((ObjectSpec(o.colour, o.shape, o.motion, wrong_size),))
    )
    assert res2.per_attribute["size"] == 0.0


def test_matching_is_order_independent() -> None:
    frames, spec = _two_object_clip()
    det = recognise_clip(frames)
    fwd = match_objects(spec.objects, det)
    rev = match_objects(spec.objects[::-1], det)
    assert fwd == rev[::-1] and sorted(x for x in fwd if x is not None) == [0, 1]


def test_background_is_reported_not_averaged_by_default() -> None:
    clip = make_clip(8, seed=9)
    spec = clip.spec
    res = score_prompt_fidelity(clip.frames, canonical_caption(spec))
    assert res.per_attribute["background"] == 1.0 and res.background is not None
    assert spec.background is not None
    other = "maroon" if spec.background.colour != "maroon" else "navy"
    wrong_bg = SceneSpec(spec.objects, BackgroundSpec(other, spec.background.texture))
    res = score_prompt_fidelity(clip.frames, wrong_bg)
    assert res.per_attribute["background"] is not None and res.per_attribute["background"] < 1.0
    assert res.overall == 1.0
    assert score_prompt_fidelity(clip.frames, wrong_bg, include_background=True).overall < 1.0


def test_tally_and_evaluate_videos() -> None:
    clips = [make_clip(i, seed=9) for i in range(6)]
    tally = FidelityTally()
    for c in clips:
        tally.add(score_prompt_fidelity(c.frames, c.spec))
    assert tally.summary()["all_correct"] == 1.0
    items = [(c.frames, c.caption) for c in clips]
    items.append((clips[0].frames, "a purple triangle moving up"))  # wrong prompt
    items.append((clips[0].frames, "nothing recognisable here"))  # unparseable
    rep = evaluate_videos(items)
    assert rep["n"] == 7 and len(rep["errors"]) == 1
    assert rep["videos"][0]["overall"] == 1.0 and rep["videos"][6]["overall"] < 1.0
    assert 0.0 < rep["all_correct"] < 1.0
    assert set(rep["accuracy"]) >= {"count", "colour", "shape", "size", "motion"}
    assert rep["quality"]["edge_width_px"] is not None and rep["alarm_rate"]["blur"] == 0.0


def test_speed_along_the_prompted_direction() -> None:
    """A circle moving right at 0.15 frame widths/s: +0.15 along "right", -0.15 along "left",
    ~0 along "up"; a prompt without a translation adds nothing to the measure."""
    from engine.data.layout import Track
    from engine.data.render import RenderConfig, render_background, render_frames

    render = RenderConfig()
    obj = ObjectSpec("white", "circle", "right", "medium")
    tr = Track(obj, 30.0, 64.0, 0.15 * 128, 0.0, 0.157 * 128, 0.0, 0.0)
    bg = render_background(BackgroundSpec("black", "plain"), 128, 128, np.random.default_rng(0))
    frames = render_frames(bg, (tr,), render.times())
    items = [(frames, f"a white circle moving {d} on a black background") for d in ("right", "left", "up")]
    along = [m["speed_along_prompt"] for f, p in items for m in score_prompt_fidelity(f, p).matches]
    assert np.allclose(along, [0.15, -0.15, 0.0], atol=0.01), along
    report = evaluate_videos([*items, (frames, "a white circle growing on a black background")])
    assert report["speed_along_prompt"]["objects"] == 3
    assert abs(report["speed_along_prompt"]["mean"]) < 0.01  # (0.15 - 0.15 + 0) / 3
