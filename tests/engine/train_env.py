"""Shared pieces of the training-objective tests (test_train_stages.py, test_train_self_forcing.py):
the micro `test` preset, a fixed text batch, a forward hook and the decrease check."""

from __future__ import annotations

import numpy as np
import torch

from engine.train.models import training_preset

CFG = training_preset("test")


def decreased(losses: list[float], factor: float) -> bool:
    """The mean of the last three values is below `factor` times the mean of the first three."""
    return float(np.mean(losses[-3:])) < factor * float(np.mean(losses[:3]))


def text_batch(batch: int) -> torch.Tensor:
    """A fixed batch of random text-encoder outputs [B, Lt, Dt]."""
    g = torch.Generator().manual_seed(5)
    return torch.randn(batch, CFG.dit.text_len, CFG.dit.text_dim, generator=g)


class Inputs:
    """Forward hook recording every (x, t) a model is called with."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):  # type: ignore[no-untyped-def]
        self.calls.append((args[0].detach().clone(), args[1].detach().clone()))
