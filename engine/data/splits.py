"""Train / held-out split of the synthetic world.

Held-out rule (compositional generalisation): a (colour, shape, motion) triple is *held out*
when

    (colour_index + 2 * shape_index + 3 * motion_index) % 10 == 0

with indices into ``vocab.COLOUR_NAMES``, ``vocab.SHAPES`` and ``vocab.MOTIONS``. Because 3 is
invertible mod 10 and 2 * shape_index takes distinct values mod 10 for the three shapes, every
(colour, shape) pair keeps at least 10 of its 12 motions in training, and every (colour, motion)
and (shape, motion) pair is held out with at most one partner — so every attribute value and
every pair of values is seen in training, but the held-out triples never are. The training split
never renders a held-out triple (for any object of a scene); the held-out split renders scenes in
which at least one object has a held-out triple.

Held-out paraphrase templates are marked in :mod:`engine.data.captions` (``heldout=True``): the
training split never uses them.
"""

from __future__ import annotations

from .vocab import COLOUR_NAMES, MOTIONS, SHAPES

SPLITS: tuple[str, ...] = ("train", "heldout")


def is_heldout_triple(colour: str, shape: str, motion: str) -> bool:
    """True for the (colour, shape, motion) triples that the training split never renders."""
    ci, si, mi = COLOUR_NAMES.index(colour), SHAPES.index(shape), MOTIONS.index(motion)
    return (ci + 2 * si + 3 * mi) % 10 == 0


def heldout_triples() -> list[tuple[str, str, str]]:
    """All held-out triples in canonical order."""
    return [(c, s, m) for c in COLOUR_NAMES for s in SHAPES for m in MOTIONS if is_heldout_triple(c, s, m)]


def train_triples() -> list[tuple[str, str, str]]:
    """All triples the training split may render."""
    return [
        (c, s, m) for c in COLOUR_NAMES for s in SHAPES for m in MOTIONS if not is_heldout_triple(c, s, m)
    ]
