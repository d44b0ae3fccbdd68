"""Endless streams and prompt switches."""

from __future__ import annotations

import numpy as np

from engine.data.layout import state_at
from engine.data.render import RenderConfig
from engine.data.shapes import EXTENTS
from engine.data.stream import StreamRenderer
from engine.data.vocab import SIZES

CFG = RenderConfig()


def test_stream_is_deterministic() -> None:
    def run() -> np.ndarray:
        s = StreamRenderer("a red circle moving left and a blue triangle bouncing", CFG, seed=4)
        a = s.render(20)
        s.set_prompt("a yellow square growing on a navy checkerboard")
        return np.concatenate([a, s.render(20)])

    assert np.array_equal(run(), run())


def test_streams_run_for_ten_minutes_within_bounds() -> None:
    prompt = "a red circle moving up and to the left, a blue triangle bouncing and a white square growing"
    s = StreamRenderer(prompt, CFG, seed=1)
    s.advance(10 * 60 * 16)
    frames = s.render(64)
    assert frames.shape == (64, 128, 128, 3)
    times = (s.frame_index - 64 + np.arange(64)) / CFG.fps
    for tr in s._tracks:
        st = state_at(tr, times, 128, 128)
        left, top, right, bottom = EXTENTS[str(tr.obj.shape)]
        if tr.obj.motion == "bouncing":
            assert (st.cx - left * st.radius >= -1e-6).all() and (
                st.cx + right * st.radius <= 128 + 1e-6
            ).all()
            assert (st.cy - top * st.radius >= -1e-6).all() and (
                st.cy + bottom * st.radius <= 128 + 1e-6
            ).all()
        if tr.obj.motion == "growing":
            nominal = SIZES[str(tr.obj.size)] * 128
            assert (st.radius >= nominal / np.sqrt(2) - 1e-6).all() and (
                st.radius <= nominal * np.sqrt(2) + 1e-6
            ).all()
            assert (np.diff(st.radius) > 0).sum() > 50  # growing nearly all the time (sawtooth)
        if tr.obj.motion == "up_left":  # wraps: always on or near the screen
            assert (st.cx > -50).all() and (st.cx < 178).all() and (st.cy > -50).all() and (st.cy < 178).all()


def _centroid(frame: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    m = np.abs(frame.astype(int) - np.array(rgb)).sum(-1) < 30
    ys, xs = np.nonzero(m)
    return np.array([xs.mean(), ys.mean()])


def test_prompt_switch_keeps_shared_object_and_fades_others() -> None:
    s = StreamRenderer(
        "a red circle moving right and a green square staying still on a black background", CFG, seed=2
    )
    before = s.render(10)
    s.set_prompt("a red circle moving down and a yellow triangle staying still on a gray background")
    after = s.render(16)
    # the red circle continues from where it was (moving ~2 px per frame)
    jump = np.linalg.norm(_centroid(after[0], (230, 30, 40)) - _centroid(before[-1], (230, 30, 40)))
    assert jump < 4.0
    # the yellow triangle fades in, the green square fades out, the background cross-fades
    yellow = np.array([250, 228, 30])
    star_strength = [np.abs(f.astype(int) - yellow).sum(-1).min() for f in after[:10]]
    assert star_strength[0] > star_strength[-1]
    corner = after[:, 1, 1].astype(int).sum(-1)
    assert corner[0] < corner[-1] and corner[-1] == sum((62, 62, 66))
    assert s.schedule[1][0] == 10
    later = s.render(16)
    green = np.abs(later.astype(int) - np.array([40, 200, 60])).sum(-1)
    assert green.min() > 60  # the square is gone


def test_switch_without_background_keeps_it() -> None:
    s = StreamRenderer("a red circle moving left on a maroon striped background", CFG, seed=0)
    a = s.render(4)
    s.set_prompt("a blue square bouncing")
    b = s.render(12)
    assert np.array_equal(a[0, :4, :4], b[-1, :4, :4])


def test_diagonal_movers_wrap_through_corners() -> None:
    """x and y wrap in the same frame, so the object is fully visible once per period."""
    for seed in range(4):
        s = StreamRenderer("a large white triangle moving up and to the left", CFG, seed=seed)
        tr = s._tracks[0]
        st = state_at(tr, np.arange(0, 120 * 16) / CFG.fps, 128, 128)
        wrap_x = np.nonzero(np.diff(st.cx) > 50)[0]
        wrap_y = np.nonzero(np.diff(st.cy) > 50)[0]
        assert len(wrap_x) >= 5 and np.array_equal(wrap_x, wrap_y)
