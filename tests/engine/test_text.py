"""Prompt encoders: LRU cache, the hash encoder, the MiniLM backbone (vs transformers), UMT5 (tiny
random). The grounded encoder of the tiny preset: tests/engine/test_text_grounded.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.text.base import CachedTextEncoder
from engine.text.hashed import HashTextEncoder


class CountingEncoder(HashTextEncoder):
    def __init__(self) -> None:
        super().__init__(text_len=4, dim=3)
        self.calls: list[list[str]] = []

    def encode(self, prompts: list[str]) -> torch.Tensor:
        self.calls.append(list(prompts))
        return super().encode(prompts)


def test_lru_cache_hits_and_evicts() -> None:
    inner = CountingEncoder()
    enc = CachedTextEncoder(inner, max_entries=2)
    a1 = enc.encode(["a"])
    enc.encode(["b", "a"])
    assert inner.calls == [["a"], ["b"]]  # "a" came from the cache
    enc.encode(["c"])  # evicts the least recently used ("b")
    enc.encode(["a"])
    assert inner.calls[-1] == ["c"] and len(enc) == 2
    enc.encode(["b"])
    assert inner.calls[-1] == ["b"]
    assert torch.equal(enc.encode(["a"])[0], a1[0])
    assert enc.hits >= 2


def test_hash_encoder_is_deterministic_and_zero_padded() -> None:
    enc = HashTextEncoder(text_len=6, dim=8)
    x = enc.encode(["Red circle, moving left"])
    y = HashTextEncoder(text_len=6, dim=8).encode(["red CIRCLE moving left"])
    assert torch.equal(x, y)
    assert x[0, :4].abs().sum(-1).min() > 0 and torch.all(x[0, 4:] == 0)


def test_minilm_matches_transformers_bert() -> None:
    transformers = pytest.importorskip("transformers", reason="reference implementation for the check")
    from engine.text.minilm import MiniLMBackbone, default_model_dir

    ours = MiniLMBackbone()
    ref = transformers.BertModel.from_pretrained(str(default_model_dir()), local_files_only=True).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(default_model_dir()), local_files_only=True)
    prompts = ["a red circle moving left on a black background", "two objects"]
    batch = tok(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = ref(**batch).last_hidden_state
        got = ours.model(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], want[mask], atol=2e-5, rtol=1e-4)


def test_minilm_token_states_mask_and_paraphrase_similarity() -> None:
    from engine.text.minilm import MiniLMBackbone

    backbone = MiniLMBackbone()
    states, mask = backbone.token_states(
        ["a red circle moving left", "a red circle that moves to the left", "a blue square moving up"]
    )
    assert states.shape[0] == 3 and states.shape[2] == 384
    # "a red circle moving left" = [CLS] + 5 word pieces + [SEP]; padded positions are zero
    assert mask[0].sum() == 7 and torch.all(states[0, 7:] == 0) and torch.all(states[0, :7].abs().sum(-1) > 0)
    pooled = torch.nn.functional.normalize(
        (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1
    )
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2]  # the paraphrase is closer than a different scene


def test_umt5_encoder_with_a_tiny_random_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers", reason="the UMT5 encoder is built on transformers")
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from engine.text.umt5 import UMT5TextEncoder

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "red": 4, "circle": 5, "blue": 6}
    tk = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(tmp_path)
    cfg = transformers.UMT5Config(
        vocab_size=len(vocab),
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    transformers.UMT5EncoderModel(cfg).save_pretrained(tmp_path)

    enc = UMT5TextEncoder.from_pretrained(str(tmp_path), text_len=6)
    assert enc.dim == 16 and enc.text_len == 6
    out = enc.encode(["a red circle", "blue"])
    assert out.shape == (2, 6, 16)
    assert torch.all(out[0, 3:] == 0) and out[0, :3].abs().sum(-1).min() > 0  # rows past the prompt are zero
    assert torch.all(out[1, 1:] == 0)
    again = UMT5TextEncoder.from_pretrained(str(tmp_path), text_len=6).encode(["a red circle"])
    torch.testing.assert_close(again[0], out[0])
