"""The scene model and the held-out split rule."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from engine.data.splits import heldout_triples, is_heldout_triple, train_triples
from engine.data.vocab import COLOUR_NAMES, MOTIONS, SHAPES
from engine.data.world import BackgroundSpec, ObjectSpec, SceneSpec, complete_spec


def test_heldout_rule_is_the_documented_formula() -> None:
    for c in COLOUR_NAMES:
        for s in SHAPES:
            for m in MOTIONS:
                expect = (COLOUR_NAMES.index(c) + 2 * SHAPES.index(s) + 3 * MOTIONS.index(m)) % 10 == 0
                assert is_heldout_triple(c, s, m) == expect
    held, train = heldout_triples(), train_triples()
    assert len(held) + len(train) == len(COLOUR_NAMES) * len(SHAPES) * len(MOTIONS)
    assert 0.08 < len(held) / (len(held) + len(train)) < 0.12


def test_every_value_and_pair_is_seen_in_training() -> None:
    train = set(train_triples())
    for c in COLOUR_NAMES:
        for s in SHAPES:
            assert sum((c, s, m) in train for m in MOTIONS) >= len(MOTIONS) - 2
    for c in COLOUR_NAMES:
        for m in MOTIONS:
            assert any((c, s, m) in train for s in SHAPES)
    for s in SHAPES:
        for m in MOTIONS:
            assert any((c, s, m) in train for c in COLOUR_NAMES)


def test_sample_respects_splits_and_scene_rules() -> None:
    rng = np.random.default_rng(0)
    counts: Counter[int] = Counter()
    for _ in range(1500):
        spec = SceneSpec.sample(rng, "train")
        assert spec.is_complete()
        assert not spec.is_heldout()
        counts[spec.count] += 1
        if spec.count == 2:
            a, b = spec.objects
            assert a.colour != b.colour
            assert not (a.size == "large" and b.size == "large")
    assert counts[1] > 0 and counts[2] > 0
    for _ in range(500):
        spec = SceneSpec.sample(rng, "heldout")
        assert spec.objects[0].is_heldout()


def test_sample_is_deterministic() -> None:
    a = [SceneSpec.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [SceneSpec.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    with pytest.raises(ValueError):
        SceneSpec.sample(np.random.default_rng(0), "test")


def test_spec_dict_round_trip() -> None:
    spec = SceneSpec.sample(np.random.default_rng(3), n_objects=2)
    assert SceneSpec.from_dict(spec.to_dict()) == spec


def test_complete_spec_fills_missing_and_keeps_previous_background() -> None:
    prev = SceneSpec((ObjectSpec("red", "circle", "left", "small"),), BackgroundSpec("navy", "stripes"))
    partial = SceneSpec((ObjectSpec("blue", "triangle", "up"),), None)
    full = complete_spec(partial, np.random.default_rng(0), prev)
    assert full.is_complete()
    assert full.background == prev.background
    assert full.objects[0].colour == "blue" and full.objects[0].size is not None
