"""Prompt encoder interface and the LRU cache of prompt embeddings.

An encoder maps prompts to a zero-padded embedding [B, text_len, text_dim] (rows after the
prompt's tokens are exact zeros, as the Wan text encoder produces them).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class TextEncoder(Protocol):
    text_len: int
    dim: int

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> [B, text_len, dim] float32 on the CPU."""
        ...


class CachedTextEncoder:
    """Wraps an encoder with an LRU cache keyed by the exact prompt text."""

    def __init__(self, encoder: TextEncoder, max_entries: int = 256) -> None:
        self.encoder = encoder
        self.text_len = encoder.text_len
        self.dim = encoder.dim
        self.max_entries = max_entries
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def encode(self, prompts: list[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            self.misses += len(missing)
            for prompt, emb in zip(missing, self.encoder.encode(missing), strict=True):
                self._cache[prompt] = emb
        self.hits += len(prompts) - len(missing)
        for prompt in prompts:
            self._cache.move_to_end(prompt)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return torch.stack([self._cache[p] for p in prompts])

    def load_weights(self, path: str | Path) -> None:
        """Load trained weights into the wrapped encoder and forget the cached embeddings."""
        load = getattr(self.encoder, "load_weights", None)
        if load is None:
            raise TypeError(f"{type(self.encoder).__name__} has no trainable weights to load")
        load(path)
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)
