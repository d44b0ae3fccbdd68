"""Presets: the wan-1.3b shapes equal the real Self Forcing checkpoint's, built without memory."""

from __future__ import annotations

import torch

from engine.model.dit import CausalDiT
from engine.presets import PRESETS, get_preset


def wan_1_3b_checkpoint_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter shapes of Wan2.1-T2V-1.3B / Self-Forcing `generator_ema` (written out by hand)."""
    d, ffn, heads_out = 1536, 8960, 64  # head: 1*2*2 patch * 16 channels
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (d, 16, 1, 2, 2),
        "patch_embedding.bias": (d,),
        "text_embedding.0.weight": (d, 4096),
        "text_embedding.0.bias": (d,),
        "text_embedding.2.weight": (d, d),
        "text_embedding.2.bias": (d,),
        "time_embedding.0.weight": (d, 256),
        "time_embedding.0.bias": (d,),
        "time_embedding.2.weight": (d, d),
        "time_embedding.2.bias": (d,),
        "time_projection.1.weight": (6 * d, d),
        "time_projection.1.bias": (6 * d,),
        "head.modulation": (1, 2, d),
        "head.head.weight": (heads_out, d),
        "head.head.bias": (heads_out,),
    }
    for i in range(30):
        b = f"blocks.{i}."
        shapes[b + "modulation"] = (1, 6, d)
        for attn in ("self_attn", "cross_attn"):
            for proj in "qkvo":
                shapes[f"{b}{attn}.{proj}.weight"] = (d, d)
                shapes[f"{b}{attn}.{proj}.bias"] = (d,)
            shapes[f"{b}{attn}.norm_q.weight"] = (d,)
            shapes[f"{b}{attn}.norm_k.weight"] = (d,)
        shapes[b + "norm3.weight"] = (d,)
        shapes[b + "norm3.bias"] = (d,)
        shapes[b + "ffn.0.weight"] = (ffn, d)
        shapes[b + "ffn.0.bias"] = (ffn,)
        shapes[b + "ffn.2.weight"] = (d, ffn)
        shapes[b + "ffn.2.bias"] = (d,)
    return shapes


def test_wan_1_3b_on_meta_device_has_the_checkpoint_shapes() -> None:
    cfg = get_preset("wan-1.3b")
    with torch.device("meta"):
        dit = CausalDiT(cfg.dit)
    ours = {k: tuple(v.shape) for k, v in dit.state_dict().items()}
    expected = wan_1_3b_checkpoint_shapes()
    assert ours == expected
    assert all(p.is_meta for p in dit.parameters())
    assert 1.40e9 < sum(p.numel() for p in dit.parameters()) < 1.44e9  # "1.3B"


def test_wan_geometry() -> None:
    cfg = get_preset("wan-1.3b")
    assert (cfg.width, cfg.height) == (832, 480)
    assert cfg.grid == (30, 52) and cfg.tokens_per_frame == 1560
    assert cfg.cache.max_frames * cfg.tokens_per_frame == 32760
    assert cfg.dit.head_dim == 128


def test_every_preset_builds_and_is_consistent() -> None:
    for name, cfg in PRESETS.items():
        assert cfg.name == name
        assert cfg.width % 16 == 0 and cfg.height % 16 == 0, name
        if name != "wan-1.3b":
            CausalDiT(cfg.dit)


def test_tiny_cache_spans_the_teacher_clip() -> None:
    """The tiny student attends only as far back as its teacher's training clips reach: the
    rolling cache holds `clip_latent_frames` frames with no sink, so every query-key distance
    (and so every relative RoPE rotation) is one the teacher and the ode stage trained at, and
    the self-forcing stage scores windows of that length (the teacher's joint distribution).
    With 12 frames and a 3-frame sink the stream lost 4 points of fidelity after its first 2 s
    (docs/models.md)."""
    from engine.train.config import default_config_path, load_config
    from engine.train.stages.self_forcing import SelfForcingStageConfig
    from engine.train.stages.teacher import TeacherStageConfig

    teacher = load_config(TeacherStageConfig, default_config_path("teacher"))
    student = load_config(SelfForcingStageConfig, default_config_path("self-forcing"))
    tiny = get_preset("tiny")
    cache = tiny.cache
    assert cache.mode == "rolling" and cache.sink_frames == 0
    assert cache.max_frames == teacher.clip_latent_frames
    assert cache.max_frames == student.window_chunks * tiny.sampler.frames_per_chunk
    # window positions: a bench's `--cache 12 3` is then exactly the earlier releases' cache
    assert cache.rope_positions == "window"
