"""Prompt encoders (see base.TextEncoder) and the factory used by presets."""

from __future__ import annotations

from engine.config import GeneratorConfig
from engine.text.base import CachedTextEncoder, TextEncoder
from engine.text.hashed import HashTextEncoder

__all__ = ["CachedTextEncoder", "HashTextEncoder", "TextEncoder", "build_text_encoder"]


def build_text_encoder(config: GeneratorConfig) -> CachedTextEncoder:
    text = config.text
    encoder: TextEncoder
    if text.kind == "hash":
        encoder = HashTextEncoder(config.dit.text_len, config.dit.text_dim)
    elif text.kind == "umt5":
        if text.path is None:
            raise ValueError("the umt5 text encoder needs TextConfig.path (a transformers directory)")
        from engine.text.umt5 import UMT5TextEncoder

        encoder = UMT5TextEncoder.from_pretrained(text.path, text_len=config.dit.text_len)
    elif text.kind == "grounded":
        from engine.text.grounded import GroundedTextEncoder

        encoder = GroundedTextEncoder(text.path)
        if (config.dit.text_len, config.dit.text_dim) != (encoder.text_len, encoder.dim):
            raise ValueError(
                f"the grounded encoder gives {encoder.text_len} rows of {encoder.dim}; the preset's DiT "
                f"takes {config.dit.text_len} of {config.dit.text_dim}"
            )
    else:
        raise ValueError(f"unknown text encoder kind {text.kind!r}")
    return CachedTextEncoder(encoder, text.cache_size)
