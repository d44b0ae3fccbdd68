"""Quality measures must flag injected defects and stay quiet on clean clips."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data.dataset import Clip, make_clip
from engine.eval.defects import flicker, freeze, gaussian_blur, h264_roundtrip, hue_rotate, mild_degradation
from engine.eval.fidelity import match_objects, score_prompt_fidelity
from engine.eval.quality import QualityThresholds, frozen_pairs, quality_measures
from engine.eval.recognise import recognise_tracks


def _clips(n: int, pred=lambda c: True) -> list[Clip]:  # type: ignore[no-untyped-def]
    out = []
    i = 0
    while len(out) < n:
        c = make_clip(i, seed=21)
        if pred(c):
            out.append(c)
        i += 1
    return out


def _alarms(frames: np.ndarray, clip: Clip) -> dict[str, bool]:
    objs, labels = recognise_tracks(frames, 16.0)
    q = quality_measures(frames, labels, objs, clip.spec, match_objects(clip.spec.objects, objs))
    return q["alarms"]


CLEAN = {
    "clean": lambda f: f,
    "mild": lambda f: mild_degradation(f, np.random.default_rng(0)),
    "h264": lambda f: h264_roundtrip(f, 16.0),
}


@pytest.mark.parametrize("condition", list(CLEAN))
def test_no_alarm_on_clean_or_mildly_degraded_clips(condition: str) -> None:
    for clip in _clips(8):
        alarms = _alarms(CLEAN[condition](clip.frames), clip)
        assert not any(alarms.values()), (condition, clip.caption, alarms)


def test_strong_blur_is_detected() -> None:
    for clip in _clips(6):
        assert _alarms(gaussian_blur(clip.frames, 2.5), clip)["blur"]


def test_hue_rotation_is_detected() -> None:
    coloured = _clips(6, lambda c: all(o.colour != "white" for o in c.spec.objects))
    for clip in coloured:
        shifted = hue_rotate(clip.frames, 90.0)
        assert _alarms(shifted, clip)["colour"]
        assert score_prompt_fidelity(shifted, clip.spec).per_attribute["colour"] == 0.0


def test_frozen_frames_are_detected_when_motion_is_requested() -> None:
    moving = _clips(6, lambda c: all(o.motion != "still" for o in c.spec.objects))
    for clip in moving:
        stalled = freeze(clip.frames, 8, 16)
        assert _alarms(stalled, clip)["frozen"]
        assert _alarms(h264_roundtrip(stalled, 16.0), clip)["frozen"]
    still = _clips(1, lambda c: all(o.motion == "still" for o in c.spec.objects))[0]
    assert frozen_pairs(still.frames).all()  # a still scene is frozen ...
    assert not _alarms(still.frames, still)["frozen"]  # ... and that is no defect


def test_flicker_is_detected() -> None:
    for clip in _clips(4):
        assert _alarms(flicker(clip.frames, 4.0), clip)["flicker"]


def test_thresholds_are_configurable() -> None:
    clip = _clips(1)[0]
    objs, labels = recognise_tracks(clip.frames, 16.0)
    strict = QualityThresholds(edge_width_px=0.5)
    q = quality_measures(clip.frames, labels, objs, clip.spec, match_objects(clip.spec.objects, objs), strict)
    assert q["alarms"]["blur"]


def test_degradations_keep_format() -> None:
    frames = make_clip(0).frames
    for f in (
        gaussian_blur(frames, 0.8),
        mild_degradation(frames, np.random.default_rng(0)),
        h264_roundtrip(frames),
    ):
        assert f.shape == frames.shape and f.dtype == np.uint8
    assert abs(float(gaussian_blur(frames, 1.5).mean()) - float(frames.mean())) < 0.5
    assert np.abs(hue_rotate(frames, 360.0).astype(int) - frames).max() <= 1
