"""VSA inside the causal, cached DiT: a config switch for every preset, dense-equivalent at 0."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.config import GeneratorConfig
from engine.generator import Generator
from engine.kv_cache import KVCache
from engine.loader import load_into
from engine.model.dit import CausalDiT, cached_layout
from engine.presets import get_preset
from engine.sparse import VSAConfig


def small(preset: str) -> GeneratorConfig:
    """A preset's architecture (heads, head dim, cache, positions) with fewer layers and a small
    latent, so that every preset runs on CPU in seconds."""
    cfg = get_preset(preset)
    dit = dataclasses.replace(cfg.dit, num_layers=2)
    return cfg.replace(dit=dit, latent_height=8, latent_width=12, text={"kind": "hash"})


def with_sparse(cfg: GeneratorConfig, **vsa: object) -> GeneratorConfig:
    return cfg.replace(sparse=VSAConfig(enabled=True, **vsa))  # type: ignore[arg-type]


@pytest.mark.parametrize("preset", ["test", "tiny", "wan-1.3b"])
def test_generator_runs_end_to_end_with_sparse_attention(preset: str) -> None:
    cfg = with_sparse(small(preset), sparsity=0.5, tile=(3, 2, 2))
    torch.manual_seed(0)
    gen = Generator.from_config(cfg)
    assert all(hasattr(b.self_attn, "gate_compress") for b in gen.dit.blocks)
    session = gen.open("a red circle moving left", seed=1)
    chunks = [session.step() for _ in range(5)]  # past the first eviction of every preset's window
    assert all(c.frames.shape[1:] == (cfg.height, cfg.width, 3) for c in chunks)
    assert [c.first_frame for c in chunks][1] == chunks[0].num_frames


def test_sparsity_zero_with_zero_gate_equals_dense_through_the_whole_generator() -> None:
    base = small("test").replace(cache={"max_frames": 9, "sink_frames": 3})
    torch.manual_seed(0)
    dense = Generator.from_config(base)
    sparse = Generator.from_config(with_sparse(base, sparsity=0.0, tile=(3, 2, 2)))
    load_into(sparse.dit, dense.dit.state_dict(), optional=("gate_compress",))  # gates stay zero
    sparse.vae.load_state_dict(dense.vae.state_dict())
    a, b = dense.open("x", seed=4), sparse.open("x", seed=4)
    for _ in range(5):
        ca, cb = a.step(), b.step()
        assert np.abs(ca.frames.astype(int) - cb.frames.astype(int)).max() <= 1
    for ka, kb in zip(a.cache.k, b.cache.k, strict=True):
        torch.testing.assert_close(ka, kb, atol=1e-5, rtol=1e-4)


def test_sparse_attention_changes_the_output_when_it_skips_tiles() -> None:
    base = small("test")
    torch.manual_seed(0)
    dense = Generator.from_config(base)
    sparse = Generator.from_config(with_sparse(base, sparsity=0.9, tile=(1, 1, 2)))
    load_into(sparse.dit, dense.dit.state_dict(), optional=("gate_compress",))
    sparse.vae.load_state_dict(dense.vae.state_dict())
    a, b = dense.open("x", seed=4), sparse.open("x", seed=4)
    frames = [(a.step().frames, b.step().frames) for _ in range(4)]
    assert max(np.abs(x.astype(int) - y.astype(int)).max() for x, y in frames[1:]) > 1


def test_cached_layout_follows_the_rolling_cache() -> None:
    cfg = small("test").replace(cache={"max_frames": 9, "sink_frames": 3})
    cache = KVCache(cfg.cache, num_layers=1, tokens_per_frame=cfg.tokens_per_frame, heads=2, head_dim=16)
    layouts = []
    for c in range(5):
        plan = cache.plan_write(3 * c * cfg.tokens_per_frame, 3 * cfg.tokens_per_frame)
        layouts.append(cached_layout(cache, plan.attend_start, cfg.grid))
    assert [lay.key_frames for lay in layouts] == [(3,), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)]
    assert [lay.sink_chunks for lay in layouts] == [1, 1, 1, 1, 1]


def test_full_sequence_sparse_pass_matches_cached_generation() -> None:
    """Training (block-causal, all chunks at once) and generation (chunk by chunk with the
    cache) select the same tiles and compute the same flow."""
    cfg = with_sparse(
        small("test").replace(cache={"mode": "global", "max_frames": 9, "sink_frames": 0}),
        sparsity=0.5,
        tile=(3, 2, 2),
    )
    torch.manual_seed(0)
    dit = CausalDiT(cfg.dit, cfg.sparse).eval()
    for block in dit.blocks:  # a non-zero gate so the coarse branch counts too
        torch.nn.init.normal_(block.self_attn.gate_compress.weight, std=0.1)
    prompt = dit.encode_prompt(torch.randn(1, cfg.dit.text_len, cfg.dit.text_dim))
    x = torch.randn(1, 9, 16, cfg.latent_height, cfg.latent_width)
    t = torch.full((1, 9), 500.0)
    with torch.no_grad():
        full = dit(x, t, prompt, chunk_frames=3)
        heads, head_dim = dit.cache_shape()
        cache = KVCache(
            cfg.cache, num_layers=2, tokens_per_frame=cfg.tokens_per_frame, heads=heads, head_dim=head_dim
        )
        cached = torch.cat(
            [
                dit(x[:, i : i + 3], t[:, i : i + 3], prompt, start_frames=[i], caches=[cache])
                for i in (0, 3, 6)
            ],
            dim=1,
        )
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)
