"""Caption grammar: scene specs -> text, with paraphrases.

A caption is built from a *template* (word order) filled with synonyms drawn from
:mod:`engine.data.lexicon`. Size and background are optional words (mentioned with probability
``P_SIZE`` / ``P_BACKGROUND``); colour, shape and motion are always mentioned. Templates marked
``heldout`` are never used by the training split: they exist to test whether a model understands
phrasings it has not seen (see ``splits.py`` and ``heldout_eval_prompts``).

Every caption this module produces is parsed back exactly by ``parse.parse_caption`` for all the
attributes it mentions (tested exhaustively over many seeds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .lexicon import (
    BG_COLOUR_WORDS,
    COLOUR_WORDS,
    MOTION_ADJ,
    MOTION_FIN,
    MOTION_VP,
    SHAPE_WORDS,
    SIZE_WORDS,
    TEXTURE_ADJ,
    TEXTURE_NOUN,
)
from .world import BackgroundSpec, ObjectSpec, SceneSpec

P_SIZE = 0.6
P_BACKGROUND = 0.7
P_HELDOUT_TEMPLATE = 0.5  # share of held-out templates in the held-out split

Pick = Callable[[tuple[str, ...]], str]


def _article(next_word: str) -> str:
    return "an" if next_word[:1] in "aeiou" else "a"


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


def _np(words: list[str]) -> str:
    """Noun phrase with the right indefinite article: ["big", "orange", "ball"] -> "a big orange ball"."""
    words = [w for w in words if w]
    return " ".join([_article(words[0]), *words])


@dataclass
class _Words:
    """Synonyms drawn once for one object, so a template can use any form."""

    colour: str
    shape: str
    size: str  # "" when not mentioned
    vp: str
    adj: str  # "" when the motion has no adjective form
    fin: str

    def np_(self) -> str:
        return _np([self.size, self.colour, self.shape])


def _object_words(o: ObjectSpec, pick: Pick, with_size: bool) -> _Words:
    m = str(o.motion)
    return _Words(
        colour=pick(COLOUR_WORDS[str(o.colour)]),
        shape=pick(SHAPE_WORDS[str(o.shape)]),
        size=pick(SIZE_WORDS[str(o.size)]) if with_size and o.size else "",
        vp=pick(MOTION_VP[m]),
        adj=pick(MOTION_ADJ[m]) if m in MOTION_ADJ else "",
        fin=pick(MOTION_FIN[m]),
    )


def _bg_phrase(bg: BackgroundSpec, pick: Pick, rng: np.random.Generator) -> str:
    """ " on a black background", " against a checkered navy backdrop", " over gray stripes"..."""
    colour = pick(BG_COLOUR_WORDS[str(bg.colour)])
    tex = str(bg.texture)
    style = int(rng.integers(3))
    if tex == "plain":
        adj = pick(TEXTURE_ADJ["plain"]) + " " if rng.random() < 0.3 else ""
        noun = pick(("background", "backdrop"))
        prep = pick(("on", "against", "in front of"))
        return f" {prep} {_np([adj.strip(), colour, noun])}"
    if style == 0:
        return f" on {_np([pick(TEXTURE_ADJ[tex]), colour, 'background'])}"
    if style == 1:
        noun = pick(TEXTURE_NOUN[tex])
        return f" over {colour} {noun}" if noun == "stripes" else f" over {_np([colour, noun])}"
    return f" against {_np([pick(TEXTURE_ADJ[tex]), colour, 'backdrop'])}"


def _bg_short(bg: BackgroundSpec, pick: Pick) -> str:
    """Held-out terse form: " over black", " over checkered navy"."""
    colour = pick(BG_COLOUR_WORDS[str(bg.colour)])
    tex = "" if bg.texture == "plain" else pick(TEXTURE_ADJ[str(bg.texture)]) + " "
    return f" over {tex}{colour}"


# --- templates -----------------------------------------------------------------------------
# Each takes (object words, background phrase, short background phrase, rng) and returns text.
Single = Callable[[_Words, str, str], str | None]
Double = Callable[[_Words, _Words, str, str, bool], str | None]

SINGLE_TEMPLATES: list[tuple[str, bool, Single]] = [
    ("np-vp", False, lambda w, bg, _s: f"{w.np_()} {w.vp}{bg}"),
    ("bare-np-vp", False, lambda w, bg, _s: f"{_join(w.size, w.colour, w.shape)} {w.vp}{bg}"),
    ("adj-np", False, lambda w, bg, _s: f"{_np([w.adj, w.size, w.colour, w.shape])}{bg}" if w.adj else None),
    ("np-that-is", False, lambda w, bg, _s: f"{w.np_()} that is {w.vp}{bg}"),
    ("np-fin", False, lambda w, bg, _s: f"{w.np_()} {w.fin}{bg}"),
    ("there-is", False, lambda w, bg, _s: f"there is {w.np_()} {w.vp}{bg}"),
    ("bg-first", False, lambda w, bg, _s: f"{bg.strip()}, {w.np_()} {w.fin}" if bg else None),
    # held out: never seen in training
    ("adj-over", True, lambda w, _bg, s: f"{w.adj} {w.colour} {w.shape}{s}" if w.adj and s else None),
    ("shape-in-colour", True, lambda w, bg, _s: f"{_np([w.size, w.shape])} in {w.colour}, {w.vp}{bg}"),
    ("coloured", True, lambda w, bg, _s: f"{_np([w.size, w.shape])} coloured {w.colour} {w.fin}{bg}"),
]

DOUBLE_TEMPLATES: list[tuple[str, bool, Double]] = [
    (
        "two-objects",
        False,
        lambda a, b, bg, _s, _m: f"two objects: {a.np_()} {a.vp} and {b.np_()} {b.vp}{bg}",
    ),
    ("and", False, lambda a, b, bg, _s, _m: f"{a.np_()} {a.vp} and {b.np_()} {b.vp}{bg}"),
    ("comma", False, lambda a, b, bg, _s, _m: f"{a.np_()} {a.vp}, {b.np_()} {b.vp}{bg}"),
    ("while", False, lambda a, b, bg, _s, _m: f"{a.np_()} {a.fin} while {b.np_()} {b.fin}{bg}"),
    ("both", False, lambda a, b, bg, _s, same: f"{a.np_()} and {b.np_()}, both {a.vp}{bg}" if same else None),
    (
        "bg-first",
        False,
        lambda a, b, bg, _s, _m: f"{bg.strip()}, {a.np_()} {a.fin} and {b.np_()} {b.fin}" if bg else None,
    ),
    # held out
    (
        "alongside",
        True,
        lambda a, b, _bg, s, _m: (
            f"{_np([a.adj, a.colour, a.shape])} alongside {_np([b.adj, b.colour, b.shape])}{s}"
            if a.adj and b.adj
            else None
        ),
    ),
    ("pair", True, lambda a, b, bg, _s, _m: f"a pair of shapes: {a.np_()} {a.vp}; {b.np_()} {b.vp}{bg}"),
]


def template_names(heldout: bool) -> list[str]:
    """Names of the single- and two-object templates that are (not) held out."""
    pairs = [(n, h) for n, h, _ in SINGLE_TEMPLATES] + [(n, h) for n, h, _ in DOUBLE_TEMPLATES]
    return [n for n, h in pairs if h == heldout]


def make_caption(
    spec: SceneSpec,
    rng: np.random.Generator,
    split: str = "train",
    template: str | None = None,
) -> str:
    """A random paraphrase of ``spec`` (which must be complete).

    ``split="train"`` only uses training templates; ``"heldout"`` uses held-out templates with
    probability ``P_HELDOUT_TEMPLATE``. ``template`` forces one template by name (falls back to a
    random one of the split when that template cannot express the scene).
    """
    return make_caption_with_template(spec, rng, split, template)[0]


def make_caption_with_template(
    spec: SceneSpec,
    rng: np.random.Generator,
    split: str = "train",
    template: str | None = None,
) -> tuple[str, str]:
    """Like :func:`make_caption`, also returning the name of the template used."""

    def pick(options: tuple[str, ...]) -> str:
        return options[int(rng.integers(len(options)))]

    with_size = rng.random() < P_SIZE
    with_bg = rng.random() < P_BACKGROUND and spec.background is not None
    want_heldout = split == "heldout" and rng.random() < P_HELDOUT_TEMPLATE
    words = [_object_words(o, pick, with_size) for o in spec.objects]
    bg = _bg_phrase(spec.background, pick, rng) if with_bg and spec.background else ""
    short = _bg_short(spec.background, pick) if with_bg and spec.background else ""
    if len(words) == 1:
        pool = [(n, h, f) for n, h, f in SINGLE_TEMPLATES]
        fill: Callable[[Callable[..., str | None]], str | None] = lambda f: f(words[0], bg, short)  # noqa: E731
    elif len(words) == 2:
        same = spec.objects[0].motion == spec.objects[1].motion
        pool = [(n, h, f) for n, h, f in DOUBLE_TEMPLATES]  # type: ignore[misc]
        fill = lambda f: f(words[0], words[1], bg, short, same)  # noqa: E731
    else:
        raise ValueError("captions support one or two objects")
    order = [i for i in rng.permutation(len(pool))]
    if template is not None:
        order = [i for i, (n, _, _) in enumerate(pool) if n == template] + order
    for i in order:
        name, held, f = pool[i]
        if template is None and held != want_heldout:
            continue
        if template is None and split == "train" and held:
            continue
        text = fill(f)
        if text is not None:
            return _finish(text, rng), name
    # Held-out template not applicable (e.g. diagonal motion has no adjective): any of the split.
    for i in order:
        name, held, f = pool[i]
        if split == "train" and held:
            continue
        text = fill(f)
        if text is not None:
            return _finish(text, rng), name
    raise RuntimeError("no template applies")  # unreachable: "np-vp"/"and" always apply


def _finish(text: str, rng: np.random.Generator) -> str:
    text = " ".join(text.split())
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.2:
        text += "."
    return text


def canonical_caption(spec: SceneSpec) -> str:
    """The one deterministic wording that mentions every attribute (first synonym everywhere)."""

    def first(options: tuple[str, ...]) -> str:
        return options[0]

    parts = []
    for o in spec.objects:
        w = _object_words(o, first, with_size=o.size is not None)
        parts.append(f"{w.np_()} {w.vp}")
    text = parts[0] if len(parts) == 1 else "two objects: " + " and ".join(parts)
    bg = spec.background
    if bg is not None and bg.colour is not None:
        colour = BG_COLOUR_WORDS[bg.colour][0]
        if bg.texture in (None, "plain"):
            text += f" on {_np([colour, 'background'])}"
        else:
            text += f" on {_np([TEXTURE_ADJ[str(bg.texture)][0], colour, 'background'])}"
    return text
