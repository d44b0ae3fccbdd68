"""Long-stream drift measures on synthetic streams with and without injected defects."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from engine.data.render import RenderConfig
from engine.data.stream import StreamRenderer
from engine.eval.defects import flicker, gaussian_blur, hue_rotate
from engine.eval.drift import DriftConfig, drift_report, iter_windows
from engine.eval.report import format_drift_table

CFG = RenderConfig()
A = "a red circle moving left and a blue triangle bouncing on a gray background"
B = "a yellow triangle growing on a navy checkerboard"
# 40 s of video, a switch at 20 s, 4 s windows, 10 s buckets: fast but the same code paths.
# Windows after the switch start at 21, 25, 29, 33, 37 s (1 s settle); defects start at 34 s,
# so only the last bucket (windows starting in 30..40 s) holds corrupted windows.
DRIFT = DriftConfig(window_s=4.0, bucket_s=10.0)
SWITCH = 20 * 16
TOTAL = 40 * 16


def _stream(
    defect: Callable[[np.ndarray], np.ndarray] | None = None, from_frame: int = 34 * 16
) -> Iterator[np.ndarray]:
    s = StreamRenderer(A, CFG, seed=5)
    done = 0
    while done < TOTAL:
        if done == SWITCH:
            s.set_prompt(B)
        n = min(32, TOTAL - done)
        chunk = s.render(n)
        if defect is not None and done >= from_frame:
            chunk = defect(chunk)
        yield chunk
        done += n


SCHEDULE = [(0, A), (SWITCH, B)]


def test_clean_stream_scores_perfectly_without_alarms() -> None:
    rep = drift_report(_stream(), SCHEDULE, CFG.fps, DRIFT)
    assert len(rep["buckets"]) == 4
    for b in rep["buckets"]:
        assert b["fidelity"] == 1.0, b
        assert not any(b["alarms"].values()), b
    assert rep["summary"]["mean_fidelity"] == 1.0
    assert "minute" in format_drift_table(rep)


def test_windows_follow_the_schedule() -> None:
    frames = (f for chunk in _stream() for f in chunk)  # single frames work too
    wins = list(iter_windows(frames, SCHEDULE, CFG.fps, DRIFT))
    for start, win, prompt in wins:
        end = start + len(win)
        assert (end <= SWITCH and prompt == A) or (start >= SWITCH + 16 and prompt == B)
    assert sum(len(w) for _, w, _ in wins) == TOTAL - 16  # only the settle second is skipped


def test_blur_drift_is_flagged_late_not_early() -> None:
    rep = drift_report(_stream(lambda c: gaussian_blur(c, 2.5)), SCHEDULE, CFG.fps, DRIFT)
    alarms = [b["alarms"]["blur"] for b in rep["buckets"]]
    assert alarms == [False, False, False, True]
    assert rep["buckets"][3]["sharpness_ratio"] < 0.5


def test_colour_drift_is_flagged() -> None:
    rep = drift_report(_stream(lambda c: hue_rotate(c, 60.0), from_frame=0), [(0, A)], CFG.fps, DRIFT)
    assert all(b["alarms"]["colour"] for b in rep["buckets"])
    assert rep["buckets"][0]["per_attribute"]["colour"] < 1.0


def test_freeze_and_flicker_are_flagged() -> None:
    def stall(chunk: np.ndarray) -> np.ndarray:
        return np.broadcast_to(chunk[0], chunk.shape).copy()

    rep = drift_report(_stream(stall), SCHEDULE, CFG.fps, DRIFT)
    assert [b["alarms"]["frozen"] for b in rep["buckets"]] == [False, False, False, True]
    rep = drift_report(_stream(lambda c: flicker(c, 4.0)), SCHEDULE, CFG.fps, DRIFT)
    assert [b["alarms"]["flicker"] for b in rep["buckets"]] == [False, False, False, True]
