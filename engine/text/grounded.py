"""The `tiny` preset's prompt encoder: frozen MiniLM + a grounding head trained by Rollcast.

Why (docs/models.md, "Text encoder"): a DiT that has to learn what "crimson", "orb" or
"drifting toward the top left" mean from a diffusion loss alone spends most of a CPU budget on
language. Here the language part is a supervised problem solved once, in minutes: all-MiniLM-L6-v2
(`engine.text.minilm`) turns any English prompt into contextual token states, and a small
transformer head reads them into the attribute rows of `engine.text.schema` (one row per object
slot, one for the background: probability vectors over colour, shape, size, motion...). The head
is trained on captions of the world's grammar against their ground truth (`rollcast train text`)
and checked on phrasings it never saw (held-out templates).

Head: token states [B, L, 384] -> linear to `width` + learned positions -> `layers` pre-norm
transformer layers over the tokens -> one learned query per slot cross-attends to them -> MLP ->
one linear classifier per attribute group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.text.minilm import HIDDEN, MiniLMBackbone
from engine.text.schema import (
    BACKGROUND_GROUPS,
    MAX_OBJECTS,
    OBJECT_GROUPS,
    ROW_WIDTH,
    ROWS,
    label_keys,
    rows_from_probabilities,
)


@dataclass(frozen=True)
class GroundingConfig:
    width: int = 128
    layers: int = 2
    heads: int = 4
    max_tokens: int = 64  # word pieces per prompt (incl. [CLS]/[SEP]); longer prompts are cut
    dropout: float = 0.1


class GroundingHead(nn.Module):
    """MiniLM token states -> logits per attribute group (see module docstring)."""

    def __init__(self, cfg: GroundingConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GroundingConfig()
        self.proj = nn.Linear(HIDDEN, cfg.width)
        self.position = nn.Parameter(torch.randn(cfg.max_tokens, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.width, cfg.heads, 2 * cfg.width, cfg.dropout, batch_first=True, norm_first=True
        )
        self.tokens = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.queries = nn.Parameter(torch.randn(ROWS, cfg.width) * 0.02)  # object slots, background
        self.read = nn.MultiheadAttention(cfg.width, cfg.heads, batch_first=True)
        self.norm = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.width))
        self.object_out = nn.ModuleDict({g.name: nn.Linear(cfg.width, len(g.values)) for g in OBJECT_GROUPS})
        self.background_out = nn.ModuleDict(
            {g.name: nn.Linear(cfg.width, len(g.values)) for g in BACKGROUND_GROUPS}
        )

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """states [B, L, 384], mask [B, L] (True = token) -> {"obj0.colour": [B, 8], ...}."""
        states, mask = states[:, : self.cfg.max_tokens], mask[:, : self.cfg.max_tokens]
        pad = ~mask
        h = self.proj(states) + self.position[: states.shape[1]]
        h = self.tokens(h, src_key_padding_mask=pad)  # [B, L, W]
        q = self.queries.expand(states.shape[0], -1, -1)
        slots, _ = self.read(q, h, h, key_padding_mask=pad, need_weights=False)  # [B, ROWS, W]
        slots = slots + self.mlp(self.norm(slots))
        out = {}
        for i in range(MAX_OBJECTS):
            for name, linear in self.object_out.items():
                out[f"obj{i}.{name}"] = linear(slots[:, i])
        for name, linear in self.background_out.items():
            out[f"bg.{name}"] = linear(slots[:, MAX_OBJECTS])
        return out

    def loss(self, logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over groups of the cross-entropy (IGNORE labels skipped)."""
        return sum(
            (F.cross_entropy(logits[k], labels[k], ignore_index=-100) for k, _ in label_keys()),
            torch.zeros(()),
        )


class GroundedTextEncoder:
    """`TextEncoder`: prompts -> [B, 3, ROW_WIDTH] attribute rows (engine.text.schema)."""

    text_len = ROWS
    dim = ROW_WIDTH

    def __init__(
        self,
        head_file: str | Path | None = None,
        backbone: MiniLMBackbone | None = None,
        config: GroundingConfig | None = None,
    ) -> None:
        """Without `head_file` the head has seeded random weights (tests; `load_weights` later)."""
        self.backbone = backbone or MiniLMBackbone()
        self.head = GroundingHead(config).eval().requires_grad_(False)
        if head_file is not None:
            self.load_weights(head_file)

    def load_weights(self, path: str | Path) -> None:
        from engine.loader import load_into
        from engine.vae.loading import read_state_dict

        load_into(self.head, read_state_dict(path), source=str(path))

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        states, mask = self.backbone.token_states(prompts)
        return self.rows(states, mask)

    @torch.no_grad()
    def rows(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states [B, L, 384] -> rows [B, 3, ROW_WIDTH] (float32)."""
        logits = self.head(states.float(), mask)
        return rows_from_probabilities({k: v.softmax(dim=-1) for k, v in logits.items()})

    @torch.no_grad()
    def read(self, prompts: list[str]) -> list[dict[str, str]]:
        """The most likely value of every attribute, e.g. {"obj0.colour": "red", ...} (for logs)."""
        states, mask = self.backbone.token_states(prompts)
        logits = self.head(states.float(), mask)
        return [
            {k: g.values[int(logits[k][b].argmax())] for k, g in label_keys()} for b in range(len(prompts))
        ]
