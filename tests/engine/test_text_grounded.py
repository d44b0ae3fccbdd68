"""The tiny preset's grounded prompt encoder: label schema, row layout, the head's output, and
the `text` training stage (its loss decreases on real captions and MiniLM states)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.data.captions import make_caption
from engine.data.parse import parse_caption
from engine.data.world import SceneSpec
from engine.text.grounded import GroundedTextEncoder, GroundingHead
from engine.text.minilm import MiniLMBackbone
from engine.text.schema import (
    BACKGROUND_GROUPS,
    IGNORE,
    OBJECT_GROUPS,
    OBJECT_WIDTH,
    ROW_WIDTH,
    ROWS,
    group_span,
    label_keys,
    labels,
    reverse_motion,
    rows_from_probabilities,
)
from engine.train.stages.text import accuracy, caption_set, predictions


@pytest.fixture(scope="module")
def backbone() -> MiniLMBackbone:
    return MiniLMBackbone()


def _one_hot(lab: dict[str, int], batch: int = 1) -> dict[str, torch.Tensor]:
    out = {}
    for key, group in label_keys():
        p = torch.zeros(batch, len(group.values))
        if lab[key] != IGNORE:
            p[:, lab[key]] = 1.0
        else:  # an untrained group of an absent slot: any distribution (scaled away by present=0)
            p[:] = 1.0 / len(group.values)
        out[key] = p
    return out


def test_labels_follow_the_caption_and_mark_unmentioned_attributes() -> None:
    spec = parse_caption(
        "a small red circle moving left and a blue triangle bouncing on a striped navy background"
    )
    lab = labels(spec)
    names = {k: g.values[lab[k]] for k, g in label_keys() if lab[k] != IGNORE}
    assert names["obj0.present"] == names["obj1.present"] == "yes"
    assert (names["obj0.colour"], names["obj0.shape"], names["obj0.size"], names["obj0.motion"]) == (
        "red",
        "circle",
        "small",
        "left",
    )
    assert (names["obj1.colour"], names["obj1.shape"], names["obj1.motion"]) == (
        "blue",
        "triangle",
        "bouncing",
    )
    assert names["obj1.size"] == "any"  # not mentioned
    assert (names["bg.colour"], names["bg.texture"]) == ("navy", "stripes")
    single = labels(parse_caption("a green square falling"))
    assert single["obj1.present"] == 0 and single["obj1.colour"] == IGNORE
    assert BACKGROUND_GROUPS[0].values[single["bg.colour"]] == "any"


def test_rows_layout_one_hot_slots_empty_slot_and_null() -> None:
    lab = labels(parse_caption("a yellow triangle rising on a black background"))
    rows = rows_from_probabilities(_one_hot(lab))
    assert rows.shape == (1, ROWS, ROW_WIDTH)
    obj = rows[0, 0]
    offset, hot = 0, []
    for g in OBJECT_GROUPS:
        block = obj[offset : offset + len(g.values)]
        assert block.sum() == 1.0
        hot.append(g.values[int(block.argmax())])
        offset += len(g.values)
    assert hot == ["yes", "yellow", "triangle", "any", "up"]
    assert torch.all(obj[OBJECT_WIDTH:] == 0) and torch.all(rows[0, 2, :OBJECT_WIDTH] == 0)
    empty = rows[0, 1]
    assert empty[:2].tolist() == [1.0, 0.0] and torch.all(empty[2:] == 0)  # "no object here"
    assert rows.abs().sum(-1).min() > 0  # never the all-zero null condition


def test_random_head_gives_well_formed_rows(backbone: MiniLMBackbone) -> None:
    torch.manual_seed(0)
    enc = GroundedTextEncoder(backbone=backbone)
    rows = enc.encode(["a red circle moving left", "anything at all, even a cat"])
    assert rows.shape == (2, ROWS, ROW_WIDTH) and enc.text_len == ROWS and enc.dim == ROW_WIDTH
    present = rows[:, :2, 1]  # p(yes) of each object slot
    offset = 2
    for g in OBJECT_GROUPS[1:]:  # every object group sums to the slot's p(present)
        torch.testing.assert_close(rows[:, :2, offset : offset + len(g.values)].sum(-1), present)
        offset += len(g.values)
    torch.testing.assert_close(rows[:, 2, OBJECT_WIDTH:].sum(-1), torch.full((2,), 2.0))  # 2 bg groups
    assert set(enc.read(["a red circle"])[0]) == {k for k, _ in label_keys()}


def test_text_stage_loss_decreases_and_accuracy_is_reported(backbone: MiniLMBackbone) -> None:
    torch.manual_seed(0)
    data = caption_set(backbone, 64, "train", seed=0)
    assert data.states.shape[0] == 64 and data.mask.any(1).all()
    rng = np.random.default_rng(0)
    spec = SceneSpec.sample(rng, "train")
    assert labels(parse_caption(make_caption(spec, rng, "train")))  # the grammar parses back
    head = GroundingHead()
    opt = torch.optim.Adam(head.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        head.train()
        loss = head.loss(head(data.states.float(), data.mask), data.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses
    acc = accuracy(predictions(head, data), data)
    assert 0.0 <= acc["all"] <= 1.0 and acc["obj0.colour"] > 0.3


def test_reverse_motion_swaps_each_direction_for_its_opposite() -> None:
    rows = rows_from_probabilities(
        _one_hot(labels(parse_caption("a red circle moving up and to the left and a blue square growing")))
    )
    back = reverse_motion(rows)
    lo, hi = group_span("motion")
    motion = OBJECT_GROUPS[-1]
    assert motion.name == "motion"
    assert [motion.values[int(back[0, i, lo:hi].argmax())] for i in range(2)] == ["down_right", "shrinking"]
    keep = torch.ones(ROW_WIDTH, dtype=torch.bool)
    keep[lo:hi] = False
    assert torch.equal(back[..., keep], rows[..., keep])  # colour, shape, size, background untouched
    assert torch.equal(reverse_motion(back), rows)  # an involution
    still = rows_from_probabilities(_one_hot(labels(parse_caption("a white triangle bouncing around"))))
    assert torch.equal(reverse_motion(still), still)  # bouncing has no opposite
    with pytest.raises(ValueError, match="grounded prompt rows"):
        reverse_motion(torch.zeros(1, 8, 16))  # rows of another encoder (the test preset's)
