"""Named generator presets.

- `wan-1.3b`: Wan2.1-T2V-1.3B made causal (Self Forcing), 480x832, rolling 21-frame window
  with a 3-frame sink, UMT5 prompts. Load real weights with `Generator.from_checkpoint`.
- `tiny`: the shipped CPU model (128x128, 16 fps; see docs/models.md). Its weights live in
  engine/weights/; without them it runs with seeded random weights.
- `test`: a micro model for unit tests (32x32 pixels, 2 layers).
"""

from __future__ import annotations

from engine.config import CacheConfig, DiTConfig, GeneratorConfig, SamplerConfig, TextConfig
from engine.vae.config import VAEConfig
from engine.vae.tiny import TinyVAEConfig

WAN_1_3B = GeneratorConfig(
    name="wan-1.3b",
    dit=DiTConfig(),
    cache=CacheConfig(mode="rolling", max_frames=21, sink_frames=3),
    sampler=SamplerConfig(),
    vae=VAEConfig(),
    text=TextConfig(kind="umt5"),
    latent_height=60,
    latent_width=104,
    fps=16,
)

TINY = GeneratorConfig(
    name="tiny",
    dit=DiTConfig(text_len=24, dim=192, ffn_dim=768, text_dim=384, num_heads=3, num_layers=6),
    cache=CacheConfig(mode="rolling", max_frames=12, sink_frames=3, rope_positions="window"),
    sampler=SamplerConfig(),
    vae=TinyVAEConfig(
        z_dim=16, widths=(128, 64, 32), encoder_widths=(128, 64, 64), blocks=(2, 1, 1), temporal_blocks=2
    ),
    text=TextConfig(kind="minilm"),
    latent_height=16,
    latent_width=16,
    fps=16,
)

TEST = GeneratorConfig(
    name="test",
    dit=DiTConfig(text_len=8, dim=32, ffn_dim=64, text_dim=16, num_heads=2, num_layers=2),
    cache=CacheConfig(mode="rolling", max_frames=9, sink_frames=3),
    sampler=SamplerConfig(),
    vae=VAEConfig(dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1),
    text=TextConfig(kind="hash"),
    latent_height=4,
    latent_width=6,
    fps=16,
)

PRESETS: dict[str, GeneratorConfig] = {c.name: c for c in (WAN_1_3B, TINY, TEST)}


def get_preset(name: str) -> GeneratorConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
