"""Caption grammar, paraphrases, parsing, held-out templates and evaluation prompts."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data.captions import canonical_caption, make_caption, make_caption_with_template, template_names
from engine.data.eval_prompts import heldout_eval_prompts
from engine.data.parse import CaptionParseError, parse_caption
from engine.data.splits import heldout_triples, is_heldout_triple
from engine.data.world import BackgroundSpec, ObjectSpec, SceneSpec


def _agrees(truth: SceneSpec, parsed: SceneSpec) -> bool:
    if parsed.count != truth.count:
        return False
    for t, p in zip(truth.objects, parsed.objects, strict=True):
        if (t.colour, t.shape, t.motion) != (p.colour, p.shape, p.motion):
            return False
        if p.size is not None and p.size != t.size:
            return False
    if parsed.background is not None:
        assert truth.background is not None
        return parsed.background == truth.background
    return True


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_generated_caption_parses_back(split: str) -> None:
    rng = np.random.default_rng(11)
    mentioned_size = mentioned_bg = 0
    for _ in range(3000):
        spec = SceneSpec.sample(rng, split)
        text = make_caption(spec, rng, split)
        parsed = parse_caption(text)
        assert _agrees(spec, parsed), (text, spec, parsed)
        mentioned_size += any(o.size is not None for o in parsed.objects)
        mentioned_bg += parsed.background is not None
    # optional words really are optional, and really do appear
    assert 0.4 < mentioned_size / 3000 < 0.8
    assert 0.5 < mentioned_bg / 3000 < 0.9


def test_canonical_caption_round_trip_is_exact() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        spec = SceneSpec.sample(rng)
        assert parse_caption(canonical_caption(spec)) == spec


def test_training_split_never_uses_heldout_templates() -> None:
    held = set(template_names(heldout=True))
    assert held and not held & set(template_names(heldout=False))
    rng = np.random.default_rng(5)
    used_train, used_held = set(), set()
    for _ in range(2000):
        spec = SceneSpec.sample(rng, "train")
        used_train.add(make_caption_with_template(spec, rng, "train")[1])
        spec = SceneSpec.sample(rng, "heldout")
        used_held.add(make_caption_with_template(spec, rng, "heldout")[1])
    assert not used_train & held
    assert used_held & held


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a red circle moving left on a black background", [("red", "circle", "left", None)]),
        ("a small yellow triangle bouncing", [("yellow", "triangle", "bouncing", "small")]),
        ("a crimson disc drifting to the left", [("red", "circle", "left", None)]),
        ("leftward-moving red ball over black", [("red", "circle", "left", None)]),
        (
            "two objects: a blue square moving up and a white circle staying still",
            [("blue", "square", "up", None), ("white", "circle", "still", None)],
        ),
        (
            "A big green triangle that moves toward the upper right corner.",
            [("green", "triangle", "up_right", "large")],
        ),
        ("a violet box moving down and to the left", [("purple", "square", "down_left", None)]),
        (
            "a red circle moving left and rising blue square",
            [("red", "circle", "left", None), ("blue", "square", "up", None)],
        ),
        (
            "a cyan box and an orange dot, both falling",
            [("cyan", "square", "down", None), ("orange", "circle", "down", None)],
        ),
        ("a tiny white triangle getting smaller", [("white", "triangle", "shrinking", "small")]),
    ],
)
def test_paraphrases_parse(text: str, expected: list[tuple[str, str, str, str | None]]) -> None:
    spec = parse_caption(text)
    assert [(o.colour, o.shape, o.motion, o.size) for o in spec.objects] == expected


def test_background_parsing() -> None:
    assert parse_caption("a red circle on a navy blue background").background == BackgroundSpec(
        "navy", "plain"
    )
    assert parse_caption("a red circle over checkered charcoal").background == BackgroundSpec(
        "gray", "checkerboard"
    )
    assert parse_caption("a red circle against dark red stripes").background == BackgroundSpec(
        "maroon", "stripes"
    )
    assert parse_caption("a red circle moving left").background is None


def test_unparseable_caption_raises() -> None:
    with pytest.raises(CaptionParseError):
        parse_caption("a beautiful sunset over the sea")


def test_heldout_eval_prompts_cover_every_heldout_triple() -> None:
    prompts = heldout_eval_prompts(paraphrases_per_triple=1)
    triples = {p.spec.objects[0].triple() for p in prompts if p.kind == "triple"}
    assert triples == set(heldout_triples())
    held = set(template_names(heldout=True))
    templ = [p for p in prompts if p.kind == "template"]
    assert templ and {p.template for p in templ} <= held
    for p in templ:
        assert not is_heldout_triple(*p.spec.objects[0].triple())  # type: ignore[arg-type]
    for p in prompts:
        assert _agrees(p.spec, parse_caption(p.text)), p
    assert heldout_eval_prompts() == heldout_eval_prompts()


def test_object_without_shape_word() -> None:
    spec = parse_caption("a red object going left")
    assert spec.objects == (ObjectSpec("red", None, "left", None),)
