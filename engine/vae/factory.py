"""Build and load the VAE a preset names: the Wan2.1 VAE (`VAEConfig`) or the tiny one
(`TinyVAEConfig`). Both expose the same decoding interface (`decode_chunk`, `config.pixel_frames`,
`decoder.cache_slots`), which is all that sessions and `StreamingDecoder` use."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.vae.config import VAEConfig
from engine.vae.model import WanVAE
from engine.vae.tiny import TinyVAE, TinyVAEConfig

AnyVAE = WanVAE | TinyVAE
AnyVAEConfig = VAEConfig | TinyVAEConfig


def build_vae(config: AnyVAEConfig) -> AnyVAE:
    """A randomly initialised VAE of the config's kind."""
    if isinstance(config, TinyVAEConfig):
        return TinyVAE(config)
    if isinstance(config, VAEConfig):
        return WanVAE(config)
    raise TypeError(f"unknown VAE config type {type(config).__name__}")


def load_vae_weights(path: str | Path, vae: AnyVAE) -> None:
    """Load a weights file into `vae` strictly (any float dtype in the file; cast to the model's)."""
    if isinstance(vae, WanVAE):
        from engine.vae.loading import load_wan_vae_state_dict

        load_wan_vae_state_dict(path, vae)
        return
    from engine.loader import load_into
    from engine.vae.loading import read_state_dict

    state = read_state_dict(path)
    with torch.no_grad():
        load_into(vae, state, source=str(path))
