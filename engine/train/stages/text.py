"""Stage `text`: the grounding head of the tiny prompt encoder (`engine.text.grounded`).

Captions of the world's grammar (training split: training templates and triples only) are
encoded once by the frozen MiniLM backbone; the head learns to read every attribute the caption
mentions -- per object slot present / colour / shape / size / motion, and the background's colour
and texture -- from the word-piece states (cross-entropy per group against the caption's parsed
ground truth, `engine.text.schema.labels`). At the end it is scored on captions of the held-out
split: held-out (colour, shape, motion) triples and caption templates it never saw. Output:
`text/text.safetensors`, the weights every later stage encodes prompts with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.data.captions import make_caption
from engine.data.parse import parse_caption
from engine.data.world import SceneSpec
from engine.text.grounded import GroundingHead
from engine.text.minilm import MiniLMBackbone
from engine.text.schema import IGNORE, label_keys, labels
from engine.train.config import RunConfig
from engine.train.run import StageRun, clipped_step, save_safetensors


@dataclass(frozen=True)
class TextStageConfig(RunConfig):
    lr: float = 1e-3
    max_minutes: float = 20.0
    max_steps: int = 2000
    warmup_steps: int = 100
    weight_decay: float = 0.01
    batch_size: int = 128
    captions: int = 20_000
    heldout_captions: int = 2000


CONFIG = TextStageConfig


@dataclass
class CaptionSet:
    captions: list[str]
    states: torch.Tensor  # [N, L, 384] fp16, zero-padded
    mask: torch.Tensor  # [N, L] bool
    labels: dict[str, torch.Tensor]  # key -> [N] long


def caption_set(
    backbone: MiniLMBackbone,
    n: int,
    split: str,
    seed: int,
    progress: Callable[[int], None] | None = None,
    batch: int = 64,
) -> CaptionSet:
    """`n` captions of `split` (deterministic in `seed`), their word-piece states and labels."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E47, int(split == "heldout")]))
    captions = [make_caption(SceneSpec.sample(rng, split), rng, split) for _ in range(n)]
    per = [labels(parse_caption(c)) for c in captions]
    states, masks = [], []
    for i in range(0, n, batch):
        s, m = backbone.token_states(captions[i : i + batch])
        states.append(s.half())
        masks.append(m)
        if progress is not None:
            progress(len(s))
    longest = max(s.shape[1] for s in states)
    padded = torch.zeros(n, longest, states[0].shape[2], dtype=torch.float16)
    mask = torch.zeros(n, longest, dtype=torch.bool)
    row = 0
    for s, m in zip(states, masks, strict=True):
        padded[row : row + len(s), : s.shape[1]] = s
        mask[row : row + len(s), : s.shape[1]] = m
        row += len(s)
    keys = [k for k, _ in label_keys()]
    return CaptionSet(captions, padded, mask, {k: torch.tensor([p[k] for p in per]) for k in keys})


@torch.no_grad()
def predictions(head: GroundingHead, data: CaptionSet, batch: int = 256) -> dict[str, torch.Tensor]:
    """The head's class index per label key for every caption: key -> [N]."""
    head.eval()
    parts: dict[str, list[torch.Tensor]] = {k: [] for k, _ in label_keys()}
    for i in range(0, len(data.captions), batch):
        logits = head(data.states[i : i + batch].float(), data.mask[i : i + batch])
        for k in parts:
            parts[k].append(logits[k].argmax(-1))
    return {k: torch.cat(v) for k, v in parts.items()}


def accuracy(pred: dict[str, torch.Tensor], data: CaptionSet) -> dict[str, float]:
    """Per label key: share of captions (that mention it) read right; "all": every key right."""
    out: dict[str, float] = {}
    all_right = torch.ones(len(data.captions), dtype=torch.bool)
    for k, p in pred.items():
        ok, used = p == data.labels[k], data.labels[k] != IGNORE
        out[k] = float(ok[used].float().mean()) if used.any() else 1.0
        all_right &= ok | ~used
    out["all"] = float(all_right.float().mean())
    return out


def misread(pred: dict[str, torch.Tensor], data: CaptionSet, limit: int = 8) -> list[dict[str, Any]]:
    """A few captions the head reads wrong, with the values it read instead (for the summary)."""
    out: list[dict[str, Any]] = []
    for i, caption in enumerate(data.captions):
        bad = {
            k: g.values[int(pred[k][i])]
            for k, g in label_keys()
            if data.labels[k][i] != IGNORE and pred[k][i] != data.labels[k][i]
        }
        if bad:
            out.append({"caption": caption, "read": bad})
        if len(out) >= limit:
            break
    return out


def train(
    cfg: TextStageConfig, out_dir: Path, preset: str = "tiny", resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    from tqdm import tqdm

    run = StageRun("text", out_dir, cfg, resume=resume, quiet=quiet)
    backbone = MiniLMBackbone()
    with tqdm(total=cfg.captions + cfg.heldout_captions, desc="encode captions", disable=run.quiet) as bar:
        data = caption_set(backbone, cfg.captions, "train", cfg.seed, bar.update)
        heldout = caption_set(backbone, cfg.heldout_captions, "heldout", cfg.seed, bar.update)
    head = GroundingHead()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run.restore({"head": head}, {"opt": opt})
    while not run.done:
        head.train()
        index = torch.from_numpy(run.rng.integers(0, len(data.captions), cfg.batch_size))
        lr = run.lr()
        run.set_lr(opt, lr)
        logits = head(data.states[index].float(), data.mask[index])
        loss = head.loss(logits, {k: v[index] for k, v in data.labels.items()})
        clipped_step(opt, loss, head, cfg.grad_clip)
        run.record(loss=loss.item(), lr=lr)
        run.maybe_save({"head": head}, {"opt": opt})
    run.save({"head": head}, {"opt": opt})
    save_safetensors(head, run.dir / "text.safetensors")
    held_pred = predictions(head, heldout)
    scores = {"train": accuracy(predictions(head, data), data), "heldout": accuracy(held_pred, heldout)}
    run.close()
    run.note(
        f"[text] done: {run.step} steps in {run.elapsed / 60:.1f} min; held-out captions read "
        f"entirely right: {scores['heldout']['all']:.3f}"
    )
    return {
        "stage": "text",
        "steps": run.step,
        "minutes": run.elapsed / 60,
        "accuracy": scores,
        "misread_examples": misread(held_pred, heldout),
        "last": run.log.read()[-1:],
    }
