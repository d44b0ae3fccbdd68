"""Typed configuration of the generator: transformer shapes, KV cache, sampler, latent geometry.

Every config is a frozen dataclass so that a preset is a value: it can be hashed, compared,
printed and serialised into snapshots. `engine.presets` builds the named presets from these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.sparse.config import VSAConfig
from engine.vae.config import VAEConfig
from engine.vae.tiny import TinyVAEConfig


@dataclass(frozen=True)
class DiTConfig:
    """Shapes of the causal Wan DiT (the kwargs of the reference `CausalWanModel`)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    in_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096
    out_dim: int = 16
    num_heads: int = 12
    num_layers: int = 30
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass(frozen=True)
class CacheConfig:
    """Self-attention KV cache.

    mode="global": the cache holds the whole video up to `max_frames` latent frames (the
    training length); generation stops there.
    mode="rolling": the cache holds `sink_frames` first frames forever plus the most recent
    frames, `max_frames` frames in all (the reference's `local_attn_size`); whole chunks are
    evicted, so a stream never ends.
    `max_attention_tokens` mirrors the reference's `max_attention_size` (attend only to the
    last N cached tokens); None attends to the whole filled cache.

    `rope_positions` says where the sink sits in RoPE position space once the window rolls:
    "absolute" keeps every key at its absolute frame (the reference: the sink drifts ever
    further from the current chunk, to distances never seen in training); "window" re-rotates
    the sink keys after each eviction so that the sink sits right before the window, as it did
    when the cache was first filled — attention then depends only on positions inside the
    window, and a stream is stationary however long it runs.
    """

    mode: Literal["global", "rolling"] = "rolling"
    max_frames: int = 21
    sink_frames: int = 3
    max_attention_tokens: int | None = None
    rope_positions: Literal["absolute", "window"] = "absolute"

    def __post_init__(self) -> None:
        if self.mode not in ("global", "rolling"):
            raise ValueError(f"unknown cache mode {self.mode!r}")
        if self.max_frames <= 0:
            raise ValueError("max_frames must be positive")
        if self.mode == "rolling" and not 0 <= self.sink_frames < self.max_frames:
            raise ValueError("sink_frames must be in [0, max_frames)")
        if self.rope_positions not in ("absolute", "window"):
            raise ValueError(f"unknown rope_positions {self.rope_positions!r}")


@dataclass(frozen=True)
class SamplerConfig:
    """Few-step flow-matching sampler (Self Forcing: 4 warped steps, shift 5)."""

    denoising_steps: tuple[int, ...] = (1000, 750, 500, 250)
    warp_denoising_steps: bool = True
    shift: float = 5.0
    num_train_timesteps: int = 1000
    context_noise: float = 0.0  # timestep of the cache-refresh pass
    frames_per_chunk: int = 3
    independent_first_frame: bool = False  # first chunk is a single latent frame


@dataclass(frozen=True)
class TextConfig:
    """Which prompt encoder the preset uses (see `engine.text`)."""

    kind: Literal["hash", "umt5", "grounded"] = "hash"
    # "umt5": the transformers model directory; "grounded": the grounding head's weights file
    # (None: seeded random head weights; generators load the shipped `text.safetensors`)
    path: str | None = None
    cache_size: int = 256  # LRU entries of prompt embeddings


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to build a `Generator`."""

    name: str
    dit: DiTConfig
    cache: CacheConfig
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    vae: VAEConfig | TinyVAEConfig = field(default_factory=VAEConfig)
    text: TextConfig = field(default_factory=TextConfig)
    sparse: VSAConfig = field(default_factory=VSAConfig)
    latent_height: int = 60
    latent_width: int = 104
    fps: int = 16

    def __post_init__(self) -> None:
        ph, pw = self.dit.patch_size[1:]
        if self.latent_height % ph or self.latent_width % pw:
            raise ValueError("latent size must be divisible by the patch size")

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols) of one latent frame after patching."""
        return self.latent_height // self.dit.patch_size[1], self.latent_width // self.dit.patch_size[2]

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.grid
        return h * w

    @property
    def width(self) -> int:
        return self.latent_width * self.vae.spatial_stride

    @property
    def height(self) -> int:
        return self.latent_height * self.vae.spatial_stride

    def replace(self, **changes: Any) -> GeneratorConfig:
        """Copy with top-level fields replaced; nested configs as dicts are merged."""
        merged: dict[str, Any] = {}
        for key, value in changes.items():
            current = getattr(self, key)
            if dataclasses.is_dataclass(current) and isinstance(value, dict):
                value = dataclasses.replace(current, **value)  # type: ignore[type-var]
            merged[key] = value
        return dataclasses.replace(self, **merged)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
