"""Held-out evaluation prompts: what a model trained on the training split has never seen.

Two kinds, kept apart so that a report can tell composition from phrasing:

* ``"triple"``: every held-out (colour, shape, motion) triple, worded canonically (and optionally
  with extra training-template paraphrases): tests compositional generalisation;
* ``"template"``: training triples worded with each held-out template: tests paraphrase
  generalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .captions import SINGLE_TEMPLATES, canonical_caption, make_caption_with_template
from .splits import heldout_triples, train_triples
from .vocab import DIRECTIONS
from .world import BackgroundSpec, ObjectSpec, SceneSpec


@dataclass(frozen=True)
class EvalPrompt:
    text: str
    spec: SceneSpec  # complete: renderable ground truth
    kind: str  # "triple" | "template"
    template: str  # template name, "canonical" for canonical wording


def heldout_eval_prompts(
    seed: int = 0,
    paraphrases_per_triple: int = 0,
    per_template: int = 8,
    size: str = "medium",
    background: BackgroundSpec | None = None,
) -> list[EvalPrompt]:
    """Deterministic list of held-out evaluation prompts (single-object scenes)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7A1]))
    bg = background or BackgroundSpec("black", "plain")
    out: list[EvalPrompt] = []
    for c, s, m in heldout_triples():
        spec = SceneSpec((ObjectSpec(c, s, m, size),), bg)
        out.append(EvalPrompt(canonical_caption(spec), spec, "triple", "canonical"))
        for _ in range(paraphrases_per_triple):
            text, name = make_caption_with_template(spec, rng, "train")
            out.append(EvalPrompt(text, spec, "triple", name))
    trained = train_triples()
    for name, held, _ in SINGLE_TEMPLATES:
        if not held:
            continue
        made = 0
        for k in rng.permutation(len(trained)):
            c, s, m = trained[int(k)]
            spec = SceneSpec((ObjectSpec(c, s, m, size),), bg)
            text, used = make_caption_with_template(spec, rng, "heldout", template=name)
            if used != name:  # this template cannot express the motion (e.g. no adjective form)
                continue
            out.append(EvalPrompt(text, spec, "template", name))
            made += 1
            if made >= per_template:
                break
    return out


def straight_line_prompts(limit: int) -> list[EvalPrompt]:
    """The first `limit` held-out prompts whose object moves in a straight line (the ones a
    speed along the prompted direction, or a wrap at the border, applies to)."""
    return [p for p in heldout_eval_prompts() if p.spec.objects[0].motion in DIRECTIONS][:limit]
