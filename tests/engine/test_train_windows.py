"""The windows a Self Forcing iteration scores (engine/train/windows.py)."""

from __future__ import annotations

import numpy as np

from engine.train.windows import WindowMix, plan_window

STEPS, FRAMES = 4, 3


def _plans(mix: WindowMix, n: int = 400, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [plan_window(mix, rng, STEPS, FRAMES) for _ in range(n)]


def test_an_opening_window_is_the_streams_start_after_a_finished_first_frame() -> None:
    plans = _plans(WindowMix(context_fraction=0.5, opening_fraction=1.0))
    openings = [p for p in plans if p.opening]
    assert 100 < len(openings) < 300  # every iteration without a context chunk
    for p in openings:
        assert not p.context and not p.world
        assert p.chunks == 2 and p.grad_chunks == range(0, 2) and p.clean_frames == 1
        assert p.exit_steps[0] == STEPS - 1  # the frame both scores condition on is finished
    assert len({p.exit_steps[1] for p in openings}) == STEPS  # the second chunk exits anywhere


def test_context_world_and_free_windows() -> None:
    plans = _plans(WindowMix(context_fraction=0.5, world_fraction=0.5))
    world = [p for p in plans if p.world]
    context = [p for p in plans if p.context and not p.world]
    free = [p for p in plans if not p.context]
    assert world and context and free and not any(p.opening for p in plans)
    for p in world:
        assert p.chunks == 2 and p.grad_chunks == range(1, 2) and p.clean_frames == FRAMES
    for p in context:  # the past is the student's: every earlier chunk finished, the last scored
        assert p.clean_frames == FRAMES and p.grad_chunks == range(p.chunks - 1, p.chunks)
        assert all(e == STEPS - 1 for e in p.exit_steps[:-1])
    for p in free:
        assert p.clean_frames == 0 and p.grad_chunks == range(p.chunks - 2, p.chunks)
    assert {p.chunks for p in context} == set(range(2, 8))


def test_wrap_windows_are_world_windows() -> None:
    plans = _plans(WindowMix(context_fraction=0.5, world_fraction=0.5, wrap_fraction=0.5), n=800)
    wraps = [p for p in plans if p.wrap]
    world = [p for p in plans if p.world]
    assert all(p.world for p in wraps) and 0.3 < len(wraps) / len(world) < 0.7
    assert not any(p.wrap for p in _plans(WindowMix(context_fraction=0.5, world_fraction=0.5)))


def test_a_kind_left_out_draws_nothing() -> None:
    """With the world and opening fractions at 0 the draws are those of the recipe before those
    kinds existed -- chunk count, context or not, exit steps, in that order -- so the earlier
    releases' commands still replay the same iterations."""
    mix = WindowMix(context_fraction=0.75)
    rng = np.random.default_rng(0)
    for plan in _plans(mix, 50):
        n = int(rng.integers(2, 8))
        context = bool(rng.random() < 0.75)
        scored = 1 if context else 2
        exits = [STEPS - 1] * (n - scored) + [int(e) for e in rng.integers(0, STEPS, scored)]
        assert (plan.chunks, plan.context, plan.exit_steps) == (n, context, tuple(exits))
