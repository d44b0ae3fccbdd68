"""Wan2.1 causal video VAE: encoder, decoder, streaming decode, weight loading.

Public API: `VAEConfig`, `WanVAE`, `StreamingDecoder`, `load_wan_vae_state_dict`,
`VAEStateDictError`, `check_vae_section` (golden-file verification); the light VAE of the
`tiny` preset: `TinyVAEConfig`, `TinyVAE`; `build_vae` / `load_vae_weights` for either kind.
"""

from engine.vae.config import VAEConfig
from engine.vae.factory import build_vae, load_vae_weights
from engine.vae.golden import check_vae_section
from engine.vae.layers import FeatureCache
from engine.vae.loading import VAEStateDictError, load_wan_vae_state_dict
from engine.vae.model import WanVAE
from engine.vae.streaming import StreamingDecoder
from engine.vae.tiny import TinyVAE, TinyVAEConfig

__all__ = [
    "FeatureCache",
    "StreamingDecoder",
    "TinyVAE",
    "TinyVAEConfig",
    "VAEConfig",
    "VAEStateDictError",
    "WanVAE",
    "build_vae",
    "check_vae_section",
    "load_vae_weights",
    "load_wan_vae_state_dict",
]
