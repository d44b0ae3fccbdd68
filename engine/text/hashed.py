"""A deterministic, weight-free prompt encoder for the `test` preset.

Each lower-cased word maps to a fixed Gaussian vector seeded by a stable hash of the word
(SHA-256, so embeddings are identical across processes and machines); row i of the output is
word i's vector, rows after the last word are zero. It has no notion of meaning: it exists so
that tests exercise the whole pipeline without a trained encoder.
"""

from __future__ import annotations

import hashlib
import re

import torch

_WORD = re.compile(r"[a-z0-9']+")


class HashTextEncoder:
    def __init__(self, text_len: int, dim: int) -> None:
        self.text_len = text_len
        self.dim = dim

    def _word_vector(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(self.dim, generator=gen)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(prompts), self.text_len, self.dim)
        for i, prompt in enumerate(prompts):
            for j, word in enumerate(_WORD.findall(prompt.lower())[: self.text_len]):
                out[i, j] = self._word_vector(word)
        return out
