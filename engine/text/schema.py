"""What a `tiny` prompt embedding says: the attribute groups of the synthetic world, as rows.

The grounded prompt encoder (`engine.text.grounded`) reads a prompt into one row per object slot
and one for the background. Each row is a concatenation of probability vectors, one per attribute
group, so the DiT conditions on *what the prompt asks for* in a compact, disentangled form:

    object row     [present(2) | colour(8) | shape(3) | size(3 + any) | motion(12) | 0 ...]
    background row [0 ... | colour(5 + any) | texture(4 + any)]

The object groups of a slot are scaled by the slot's probability of being present, so an empty
slot reads [1, 0, 0, ...] ("no object here") -- distinct from the all-zero rows that mean "no
prompt" (the null condition of classifier-free guidance). "any" is the value of an attribute the
prompt does not mention (a caption without a size, a prompt without a background): the model
then draws it as the training data does, at random.

Labels for training the encoder come from the world's own ground truth: `labels(spec)` for a
SceneSpec parsed from a caption of the grammar (unmentioned attributes are None there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.data.vocab import (
    BACKGROUND_COLOUR_NAMES,
    COLOUR_NAMES,
    DIRECTIONS,
    MOTIONS,
    SHAPES,
    SIZE_NAMES,
    TEXTURES,
)
from engine.data.world import SceneSpec

ANY = "any"
IGNORE = -100  # label of a group that is not trained for this caption (the absent slot's colour...)
MAX_OBJECTS = 2


@dataclass(frozen=True)
class Group:
    """One attribute: its name and its values, in the order of the probability vector."""

    name: str
    values: tuple[str, ...]

    def index(self, value: str | None) -> int:
        return self.values.index(ANY if value is None else value)


OBJECT_GROUPS: tuple[Group, ...] = (
    Group("present", ("no", "yes")),
    Group("colour", COLOUR_NAMES),
    Group("shape", SHAPES),
    Group("size", (*SIZE_NAMES, ANY)),
    Group("motion", MOTIONS),
)
BACKGROUND_GROUPS: tuple[Group, ...] = (
    Group("colour", (*BACKGROUND_COLOUR_NAMES, ANY)),
    Group("texture", (*TEXTURES, ANY)),
)
OBJECT_WIDTH = sum(len(g.values) for g in OBJECT_GROUPS)
ROW_WIDTH = OBJECT_WIDTH + sum(len(g.values) for g in BACKGROUND_GROUPS)
ROWS = MAX_OBJECTS + 1


def slot_names() -> list[str]:
    """Prefixes of the label keys: "obj0", "obj1", ..., "bg"."""
    return [f"obj{i}" for i in range(MAX_OBJECTS)] + ["bg"]


def label_keys() -> list[tuple[str, Group]]:
    """(key, group) for every classified attribute, e.g. ("obj1.shape", Group("shape", ...))."""
    keys = [(f"obj{i}.{g.name}", g) for i in range(MAX_OBJECTS) for g in OBJECT_GROUPS]
    return keys + [(f"bg.{g.name}", g) for g in BACKGROUND_GROUPS]


def labels(spec: SceneSpec) -> dict[str, int]:
    """Class index per label key for a parsed caption; objects in the order the caption names them.

    An absent slot trains only its "present" group (IGNORE elsewhere); an object without a motion
    word is not a caption of the grammar, so its motion is IGNORE as well.
    """
    if spec.count > MAX_OBJECTS:
        raise ValueError(f"prompts name at most {MAX_OBJECTS} objects, got {spec.count}")
    out: dict[str, int] = {}
    for i in range(MAX_OBJECTS):
        obj = spec.objects[i] if i < spec.count else None
        for g in OBJECT_GROUPS:
            key = f"obj{i}.{g.name}"
            if g.name == "present":
                out[key] = int(obj is not None)
            elif obj is None or (g.name != "size" and getattr(obj, g.name) is None):
                out[key] = IGNORE
            else:
                out[key] = g.index(getattr(obj, g.name))
    bg = spec.background
    out["bg.colour"] = BACKGROUND_GROUPS[0].index(None if bg is None else bg.colour)
    out["bg.texture"] = BACKGROUND_GROUPS[1].index(None if bg is None else bg.texture)
    return out


def rows_from_probabilities(probs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-key probability vectors [B, len(group)] -> prompt rows [B, ROWS, ROW_WIDTH]."""
    batch = next(iter(probs.values())).shape[0]
    out = torch.zeros(batch, ROWS, ROW_WIDTH)
    for i in range(MAX_OBJECTS):
        present = probs[f"obj{i}.present"]  # [B, 2]
        parts = [present] + [probs[f"obj{i}.{g.name}"] * present[:, 1:] for g in OBJECT_GROUPS[1:]]
        out[:, i, :OBJECT_WIDTH] = torch.cat(parts, dim=1)
    out[:, MAX_OBJECTS, OBJECT_WIDTH:] = torch.cat([probs[f"bg.{g.name}"] for g in BACKGROUND_GROUPS], dim=1)
    return out


def group_span(name: str) -> tuple[int, int]:
    """Column range [lo, hi) of an object attribute group in an object row."""
    start = 0
    for group in OBJECT_GROUPS:
        if group.name == name:
            return start, start + len(group.values)
        start += len(group.values)
    raise KeyError(name)


def permute_group(rows: torch.Tensor, name: str, order: list[int]) -> torch.Tensor:
    """Rows [B, ROWS, ROW_WIDTH] with the object group `name` re-indexed: value i takes the
    probability of value order[i] (in every object slot)."""
    lo, hi = group_span(name)
    out = rows.clone()
    out[:, :MAX_OBJECTS, lo:hi] = rows[:, :MAX_OBJECTS, lo:hi][..., order]
    return out


def _opposite_motion(motion: str) -> str:
    if motion in DIRECTIONS:
        dx, dy = DIRECTIONS[motion]
        return next(m for m, v in DIRECTIONS.items() if v == (-dx, -dy))
    return {"growing": "shrinking", "shrinking": "growing"}.get(motion, motion)


def reverse_motion(rows: torch.Tensor) -> torch.Tensor:
    """The same prompt rows with every object's motion reversed (left <-> right, up_left <->
    down_right, growing <-> shrinking; bouncing and still stay): the negative prompt of motion
    guidance."""
    if rows.shape[1:] != (ROWS, ROW_WIDTH):
        want = f"[B, {ROWS}, {ROW_WIDTH}]"
        raise ValueError(f"motion guidance needs grounded prompt rows {want}, got {list(rows.shape)}")
    return permute_group(rows, "motion", [MOTIONS.index(_opposite_motion(m)) for m in MOTIONS])
