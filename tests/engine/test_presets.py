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
