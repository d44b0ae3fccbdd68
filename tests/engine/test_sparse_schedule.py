"""VSA config: K rule, per-layer sparsity and the training ramp."""

from __future__ import annotations

import dataclasses

import pytest

from engine.sparse import VSAConfig, num_selected, sparsity_at


def test_k_rule() -> None:
    assert num_selected(546, 0.9) == 55  # ceil(54.6)
    assert num_selected(546, 0.8) == 110  # ceil(109.2)
    assert num_selected(390, 0.8) == 78  # exactly 78 despite float noise in (1 - 0.8) * 390
    assert num_selected(10, 0.0) == 10
    assert num_selected(10, 0.99) == 1  # at least one
    assert num_selected(1, 0.5) == 1
    with pytest.raises(ValueError):
        num_selected(0, 0.5)


def test_per_layer_sparsity_overrides_the_global_target() -> None:
    cfg = VSAConfig(sparsity=0.9, layer_sparsity=(0.0, 0.5, 0.95))
    assert [cfg.target(i) for i in range(3)] == [0.0, 0.5, 0.95]
    assert cfg.target(None) == 0.9
    assert VSAConfig(sparsity=0.7).target(12) == 0.7  # no override: every layer the same
    with pytest.raises(ValueError, match="layer 3"):
        cfg.target(3)
    with pytest.raises(ValueError, match="sparsity"):
        VSAConfig(layer_sparsity=(0.5, 1.0))


def test_ramp_starts_dense_and_steps_up_to_the_target() -> None:
    cfg = VSAConfig(sparsity=0.9, ramp_warmup_steps=100, ramp_interval=50, ramp_increment=0.2)
    got = {step: sparsity_at(step, cfg) for step in (0, 99, 100, 149, 150, 200, 250, 300, 10_000)}
    assert got == {0: 0.0, 99: 0.0, 100: 0.2, 149: 0.2, 150: 0.4, 200: 0.6, 250: 0.8, 300: 0.9, 10_000: 0.9}
    values = [sparsity_at(s, cfg) for s in range(0, 400)]
    assert values == sorted(values)  # never steps down
    # per layer: each layer ramps to its own target
    layered = dataclasses.replace(cfg, layer_sparsity=(0.3, 0.9))
    assert sparsity_at(10_000, layered, 0) == 0.3 and sparsity_at(200, layered, 0) == 0.3
    assert sparsity_at(200, layered, 1) == 0.6


def test_no_ramp_means_target_from_the_start() -> None:
    assert sparsity_at(0, VSAConfig(sparsity=0.8)) == 0.8
    with pytest.raises(ValueError, match="ramp_increment"):
        VSAConfig(ramp_interval=10, ramp_increment=0.0)


def test_config_is_a_serialisable_value() -> None:
    cfg = VSAConfig(enabled=True, layer_sparsity=(0.5,), tile=(3, 5, 4))
    assert dataclasses.asdict(cfg)["tile"] == (3, 5, 4)
    assert hash(cfg) == hash(VSAConfig(enabled=True, layer_sparsity=(0.5,), tile=(3, 5, 4)))
    with pytest.raises(ValueError, match="64"):
        VSAConfig(tile=(4, 4, 5))
