"""UMT5 prompt encoder for the Wan presets, through `transformers`.

Wan2.1 conditions on the last hidden state of the umt5-xxl encoder: prompts are tokenised to
`text_len` (512) tokens with padding, encoded with the attention mask, and rows past each
prompt's length are set to zero. Load from a directory in the `transformers` format
(config.json, weights, tokenizer files); nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import torch


class UMT5TextEncoder:
    def __init__(self, model: Any, tokenizer: Any, text_len: int = 512) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.text_len = text_len
        self.dim = int(model.config.d_model)

    @classmethod
    def from_pretrained(
        cls, path: str, text_len: int = 512, dtype: torch.dtype = torch.float32
    ) -> UMT5TextEncoder:
        from transformers import AutoTokenizer, UMT5EncoderModel

        model = UMT5EncoderModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, text_len)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            prompts,
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        mask = batch["attention_mask"].to(device)
        hidden = self.model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)  # zero the padding rows
        return hidden.float().cpu()
