"""Deterministic, unlimited synthetic clips as a torch IterableDataset.

Clip ``i`` of split ``s`` under seed ``k`` is a pure function of (k, s, i): the random generator
is seeded with ``SeedSequence([k, split_index, i])``, from which the scene, the layout, the
background texture and the caption are drawn in a fixed order. Workers of a DataLoader take
interleaved clip ids, so the stream of clips is the same for any number of workers (up to order).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .captions import make_caption
from .render import RenderConfig, Scene, make_scene, render_scene
from .splits import SPLITS
from .tensors import to_model_input
from .world import SceneSpec


@dataclass(frozen=True)
class Clip:
    clip_id: int
    frames: np.ndarray = field(repr=False)  # [T, H, W, 3] uint8
    caption: str
    spec: SceneSpec
    scene: Scene = field(repr=False)

    def attributes(self) -> dict[str, Any]:
        return self.spec.to_dict()


def clip_rng(seed: int, split: str, clip_id: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), clip_id]))


def make_clip(clip_id: int, split: str = "train", seed: int = 0, config: RenderConfig | None = None) -> Clip:
    """Render clip ``clip_id``: identical pixels and caption on every call."""
    cfg = config or RenderConfig()
    rng = clip_rng(seed, split, clip_id)
    spec = SceneSpec.sample(rng, split)
    scene = make_scene(spec, rng, cfg, clip=True)
    caption = make_caption(spec, rng, split)
    return Clip(clip_id, render_scene(scene, cfg), caption, spec, scene)


class SyntheticVideoDataset(IterableDataset):
    """Yields dicts ``{"frames", "caption", "attributes", "clip_id"}``.

    ``frames`` is uint8 [T, H, W, 3] numpy, or with ``as_tensor=True`` the model input float
    [3, T, H, W] in [-1, 1]. ``num_clips=None`` iterates forever (clip ids ``start``, ``start+1``,
    ...). Use :func:`collate_clips` as the DataLoader's ``collate_fn``.
    """

    def __init__(
        self,
        split: str = "train",
        seed: int = 0,
        config: RenderConfig | None = None,
        num_clips: int | None = None,
        start: int = 0,
        as_tensor: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        self.split, self.seed, self.config = split, seed, config or RenderConfig()
        self.num_clips, self.start, self.as_tensor = num_clips, start, as_tensor

    def __len__(self) -> int:
        if self.num_clips is None:
            raise TypeError("an unlimited dataset has no length")
        return self.num_clips

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        k = wid
        while self.num_clips is None or k < self.num_clips:
            clip = make_clip(self.start + k, self.split, self.seed, self.config)
            frames: Any = to_model_input(clip.frames) if self.as_tensor else clip.frames
            yield {
                "frames": frames,
                "caption": clip.caption,
                "attributes": clip.attributes(),
                "clip_id": clip.clip_id,
            }
            k += nw


def collate_clips(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch: ``video`` float [B, 3, T, H, W] in [-1, 1]; captions/attributes as lists."""
    vids = [
        b["frames"] if isinstance(b["frames"], torch.Tensor) else to_model_input(b["frames"]) for b in batch
    ]
    return {
        "video": torch.stack(vids),
        "caption": [b["caption"] for b in batch],
        "attributes": [b["attributes"] for b in batch],
        "clip_id": torch.tensor([b["clip_id"] for b in batch], dtype=torch.long),
    }
