"""Named generator presets.

- `wan-1.3b`: Wan2.1-T2V-1.3B made causal (Self Forcing), 480x832, rolling 21-frame window
  with a 3-frame sink, UMT5 prompts. Load real weights with `Generator.from_checkpoint`.
- `tiny`: the shipped CPU model (128x128, 16 fps; see docs/models.md). Its weights live in
  engine/weights/; without them it runs with seeded random weights. Patch 1x4x4 (16 tokens per
  latent frame), the grounded prompt encoder, sampler shift 2, a rolling 6-frame window without
  a sink.
- `test`: a micro model for unit tests (32x32 pixels, 2 layers).
"""

from __future__ import annotations

from engine.config import CacheConfig, DiTConfig, GeneratorConfig, SamplerConfig, TextConfig
from engine.text.schema import ROW_WIDTH, ROWS
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
    dit=DiTConfig(
        patch_size=(1, 4, 4),
        text_len=ROWS,
        text_dim=ROW_WIDTH,
        in_dim=8,
        out_dim=8,
        dim=192,
        ffn_dim=768,
        num_heads=3,
        num_layers=6,
    ),
    # the teacher's clip length: the previous chunk and the current one, no sink, so every
    # attention distance is one the teacher and the ode stage trained at (docs/models.md,
    # "The cache as long as the teacher's clip"); 12 frames with a 3-frame sink lost 4 points
    # after the first 2 s. Window positions only matter with a sink (`--cache F S` of the benches)
    cache=CacheConfig(mode="rolling", max_frames=6, sink_frames=0, rope_positions="window"),
    # the Self Forcing steps (1000/750/500/250) warped with shift 2, not Wan's 5: the flow-matching
    # shift grows with the number of latent values per frame (SD3), and 16x16x8 is 200x fewer
    sampler=SamplerConfig(shift=2.0),
    vae=TinyVAEConfig(
        z_dim=8,
        encoder_widths=(128, 64, 64),
        encoder_blocks=(2, 1, 1),
        latent_width=128,
        temporal_blocks=2,
        widths=(64, 48, 32),
        blocks=(1, 1, 1),
    ),
    text=TextConfig(kind="grounded"),
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
