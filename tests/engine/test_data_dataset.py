"""The torch dataset: determinism, splits, batching."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from engine.data.dataset import SyntheticVideoDataset, collate_clips, make_clip
from engine.data.parse import parse_caption
from engine.data.render import RenderConfig
from engine.data.splits import is_heldout_triple

SMALL = RenderConfig(width=64, height=64, fps=16.0, num_frames=9)


def test_dataset_is_deterministic_and_matches_make_clip() -> None:
    ds = SyntheticVideoDataset(split="train", seed=3, config=SMALL, num_clips=4)
    a, b = list(ds), list(ds)
    assert len(a) == 4 and len(ds) == 4
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x["frames"], y["frames"]) and x["caption"] == y["caption"]
    clip = make_clip(2, "train", 3, SMALL)
    assert np.array_equal(a[2]["frames"], clip.frames)
    assert a[2]["attributes"] == clip.spec.to_dict()
    assert parse_caption(a[2]["caption"]).count == a[2]["attributes"]["count"]


def test_splits_differ_in_triples() -> None:
    held = SyntheticVideoDataset(split="heldout", config=SMALL, num_clips=20)
    train = SyntheticVideoDataset(split="train", config=SMALL, num_clips=20)
    for item in held:
        o = item["attributes"]["objects"][0]
        assert is_heldout_triple(o["colour"], o["shape"], o["motion"])
    for item in train:
        for o in item["attributes"]["objects"]:
            assert not is_heldout_triple(o["colour"], o["shape"], o["motion"])


def test_unlimited_iteration() -> None:
    it = iter(SyntheticVideoDataset(config=SMALL))
    ids = [next(it)["clip_id"] for _ in range(5)]
    assert ids == [0, 1, 2, 3, 4]


def test_dataloader_batches_and_workers() -> None:
    ds = SyntheticVideoDataset(config=SMALL, num_clips=6)
    one = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_clips)))
    assert one["video"].shape == (3, 3, 9, 64, 64) and one["video"].dtype == torch.float32
    assert len(one["caption"]) == 3 and one["clip_id"].tolist() == [0, 1, 2]
    two = list(DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_clips))
    assert sorted(int(b["clip_id"]) for b in two) == list(range(6))
    tensors = SyntheticVideoDataset(config=SMALL, num_clips=1, as_tensor=True)
    x = next(iter(tensors))["frames"]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 9, 64, 64)
