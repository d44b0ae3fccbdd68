"""Semantic scene description: what a caption says, independent of where things are drawn.

A :class:`SceneSpec` is the ground truth for both the caption and the evaluator. Attributes may
be ``None`` only in specs produced by :func:`engine.data.parse.parse_caption` for captions that
do not mention them (size, background); ``SceneSpec.sample`` always fills everything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .splits import is_heldout_triple
from .vocab import (
    BACKGROUND_COLOUR_NAMES,
    COLOUR_NAMES,
    MOTIONS,
    SHAPES,
    SIZE_NAMES,
    TEXTURES,
)

# Sampling weights over vocab.MOTIONS (translations share weight with the others).
_MOTION_WEIGHTS = np.array([1.0] * 8 + [2.0, 1.5, 1.5, 1.5])
_MOTION_WEIGHTS = _MOTION_WEIGHTS / _MOTION_WEIGHTS.sum()
TWO_OBJECT_PROB = 0.4
TEXTURED_PROB = 0.5


@dataclass(frozen=True)
class ObjectSpec:
    colour: str | None
    shape: str | None
    motion: str | None
    size: str | None = None

    def triple(self) -> tuple[str | None, str | None, str | None]:
        return (self.colour, self.shape, self.motion)

    def is_heldout(self) -> bool:
        if self.colour is None or self.shape is None or self.motion is None:
            return False
        return is_heldout_triple(self.colour, self.shape, self.motion)

    def to_dict(self) -> dict[str, str | None]:
        return {"colour": self.colour, "shape": self.shape, "size": self.size, "motion": self.motion}


@dataclass(frozen=True)
class BackgroundSpec:
    colour: str | None = "black"
    texture: str | None = "plain"

    def to_dict(self) -> dict[str, str | None]:
        return {"colour": self.colour, "texture": self.texture}


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]
    background: BackgroundSpec | None = None

    @property
    def count(self) -> int:
        return len(self.objects)

    def is_complete(self) -> bool:
        bg_ok = self.background is not None and None not in (self.background.colour, self.background.texture)
        return bg_ok and all(None not in (o.colour, o.shape, o.motion, o.size) for o in self.objects)

    def is_heldout(self) -> bool:
        return any(o.is_heldout() for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "objects": [o.to_dict() for o in self.objects],
            "background": None if self.background is None else self.background.to_dict(),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SceneSpec:
        bg = d.get("background")
        return SceneSpec(
            objects=tuple(ObjectSpec(**o) for o in d["objects"]),
            background=None if bg is None else BackgroundSpec(**bg),
        )

    @staticmethod
    def sample(rng: np.random.Generator, split: str = "train", n_objects: int | None = None) -> SceneSpec:
        """Draw a complete scene. ``split="train"`` never yields a held-out triple;
        ``split="heldout"`` yields at least one object (the first) with a held-out triple.
        Two-object scenes always use two different colours (the evaluator groups by colour) and
        at most one large object (two large moving objects cannot stay apart in the frame)."""
        if split not in ("train", "heldout"):
            raise ValueError(f"unknown split {split!r}")
        n = n_objects if n_objects is not None else (2 if rng.random() < TWO_OBJECT_PROB else 1)
        objs: list[ObjectSpec] = []
        for i in range(n):
            want_heldout = split == "heldout" and i == 0
            allow_heldout = split == "heldout"
            while True:
                colour = str(rng.choice(COLOUR_NAMES))
                if any(o.colour == colour for o in objs):
                    continue
                shape = str(rng.choice(SHAPES))
                motion = str(MOTIONS[rng.choice(len(MOTIONS), p=_MOTION_WEIGHTS)])
                held = is_heldout_triple(colour, shape, motion)
                if held == want_heldout or (allow_heldout and not want_heldout):
                    break
            # At 128 px two large objects moving across the frame cannot stay apart: at most one.
            sizes = SIZE_NAMES if not any(o.size == "large" for o in objs) else SIZE_NAMES[:-1]
            objs.append(ObjectSpec(colour, shape, motion, str(rng.choice(sizes))))
        texture = str(rng.choice(TEXTURES[1:])) if rng.random() < TEXTURED_PROB else "plain"
        bg = BackgroundSpec(str(rng.choice(BACKGROUND_COLOUR_NAMES)), texture)
        return SceneSpec(tuple(objs), bg)


def complete_spec(spec: SceneSpec, rng: np.random.Generator, previous: SceneSpec | None = None) -> SceneSpec:
    """Fill unspecified attributes (e.g. of a parsed prompt) so the scene can be rendered.

    Missing sizes are drawn at random; a missing background keeps ``previous``'s background (a
    prompt switch that does not mention the background leaves it alone) or is drawn.
    """
    objs: list[ObjectSpec] = []
    for o in spec.objects:
        objs.append(
            replace(
                o,
                colour=o.colour
                or str(rng.choice([c for c in COLOUR_NAMES if c not in {x.colour for x in objs}])),
                shape=o.shape or str(rng.choice(SHAPES)),
                motion=o.motion or "still",
                size=o.size or str(rng.choice(SIZE_NAMES)),
            )
        )
    bg = spec.background
    prev_bg = previous.background if previous is not None else None
    if bg is None:
        bg = prev_bg if prev_bg is not None else BackgroundSpec("black", "plain")
    bg = BackgroundSpec(
        bg.colour or (prev_bg.colour if prev_bg else "black") or "black", bg.texture or "plain"
    )
    return SceneSpec(tuple(objs), bg)
