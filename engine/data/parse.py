"""Caption -> SceneSpec, for every caption the grammar produces and tolerant of paraphrases.

The parser is keyword-driven rather than a strict grammar, because prompts typed by people (and
held-out templates) reorder words freely:

1. tokenise (lower case, hyphens split, punctuation ``, ; :`` kept as tokens);
2. tag tokens with the longest matching phrase from the lexicon: colour, shape, size, background
   colour, texture, motion keyword, direction word (left/up/top/falling/...), separator
   (and, while, alongside, ``,`` ...), "both", generic noun (shape/object/thing);
3. merge a vertical and a horizontal direction word into a diagonal ("up and to the left",
   "toward the top left", "up-left");
4. split into objects at the shape words: attributes between two shapes go to the first object
   up to the last separator and to the second object after it; background words belong to the
   scene wherever they occur; motion after "both" applies to every object without one.

Unmentioned attributes stay ``None`` (e.g. size, background) so the evaluator skips them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lexicon import (
    BG_COLOUR_WORDS,
    COLOUR_WORDS,
    PARSE_EXTRA,
    SHAPE_WORDS,
    SIZE_WORDS,
    TEXTURE_ADJ,
    TEXTURE_NOUN,
)
from .world import BackgroundSpec, ObjectSpec, SceneSpec


class CaptionParseError(ValueError):
    """The caption names no object the synthetic world can draw."""


@dataclass(frozen=True)
class Tag:
    kind: str  # C S Z B X M D SEP BOTH G BGW NUM
    value: str = ""
    plural: bool = False


_MOTION_KEYWORDS: dict[str, tuple[str, ...]] = {
    "bouncing": ("bouncing", "bounces", "bounce", "bouncy", "ricocheting", "ricochets", "ricochet"),
    "growing": (
        "growing", "grows", "grow", "expanding", "expands", "expand", "swelling", "swells", "enlarging",
        "getting bigger", "gets bigger", "getting larger", "gets larger", "becoming bigger",
    ),
    "shrinking": (
        "shrinking", "shrinks", "shrink", "contracting", "contracts", "dwindling", "getting smaller",
        "gets smaller", "becoming smaller",
    ),
    "still": (
        "still", "motionless", "stationary", "static", "unmoving", "idle", "at rest", "not moving",
        "does not move", "doesn't move", "stays put", "staying put", "not move",
    ),
}  # fmt: skip
_DIRECTION_WORDS: dict[str, tuple[str, ...]] = {
    "h-": ("left", "leftward", "leftwards", "west", "westward"),
    "h+": ("right", "rightward", "rightwards", "east", "eastward"),
    "v-": (
        "up", "upward", "upwards", "rising", "rises", "rise", "ascending", "ascends", "top", "upper",
        "north", "climbing", "climbs",
    ),
    "v+": (
        "down", "downward", "downwards", "falling", "falls", "fall", "sinking", "sinks", "sink",
        "dropping", "drops", "descending", "descends", "bottom", "lower", "south",
    ),
}  # fmt: skip
_SEPARATORS = ("and", "while", "whilst", "whereas", "with", "alongside", "beside", "plus", ",", ";",
               "next to", "as well as", "together with")  # fmt: skip
_GENERIC = ("shape", "shapes", "object", "objects", "thing", "things")
_NUMBERS = {"two": 2, "three": 3, "2": 2, "3": 3, "pair": 2}
_PLURALS = {
    "circle": ("circles", "discs", "balls", "dots", "orbs"),
    "square": ("squares", "boxes", "blocks"),
    "triangle": ("triangles",),
}
_FILLER = {"to", "the", "toward", "towards", "and", "diagonally", "corner"}


def _words(phrase: str) -> tuple[str, ...]:
    return tuple(_tokenise(phrase))


def _tokenise(text: str) -> list[str]:
    text = text.lower().replace("-", " ").replace("’", "'").replace("n't", " not")
    return re.findall(r"[a-z0-9']+|[,;:]", text)


def _build_table() -> dict[tuple[str, ...], Tag]:
    table: dict[tuple[str, ...], Tag] = {}

    def add(kind: str, groups: dict[str, tuple[str, ...]], plural: bool = False) -> None:
        for value, phrases in groups.items():
            for ph in phrases:
                table.setdefault(_words(ph), Tag(kind, value, plural))

    add("C", COLOUR_WORDS)
    add("C", PARSE_EXTRA["colour"])
    add("S", SHAPE_WORDS)
    add("S", PARSE_EXTRA["shape"])
    add("S", {"triangle": ("triangular",)})
    add("S", _PLURALS, plural=True)
    add("Z", SIZE_WORDS)
    add("Z", PARSE_EXTRA["size"])
    add("B", BG_COLOUR_WORDS)
    add("B", PARSE_EXTRA["bg"])
    add("X", TEXTURE_ADJ)
    add("X", TEXTURE_NOUN)
    add("X", {"checkerboard": ("chessboard", "checker", "checks", "checked"), "stripes": ("stripe",)})
    add("M", _MOTION_KEYWORDS)
    add("D", _DIRECTION_WORDS)
    for sep in _SEPARATORS:
        table[_words(sep)] = Tag("SEP", sep)
    for g in _GENERIC:
        table[(g,)] = Tag("G", g)
    for w, n in _NUMBERS.items():
        table[(w,)] = Tag("NUM", str(n))
    table[("both",)] = Tag("BOTH")
    table[("background",)] = Tag("BGW")
    table[("backdrop",)] = Tag("BGW")
    return table


_TABLE = _build_table()
_MAX_LEN = max(len(k) for k in _TABLE)


def tag_caption(text: str) -> list[tuple[str, Tag | None]]:
    """Longest-match tagging: [(surface text, tag or None)]."""
    toks = _tokenise(text)
    out: list[tuple[str, Tag | None]] = []
    i = 0
    while i < len(toks):
        for n in range(min(_MAX_LEN, len(toks) - i), 0, -1):
            tag = _TABLE.get(tuple(toks[i : i + n]))
            if tag is not None:
                out.append((" ".join(toks[i : i + n]), tag))
                i += n
                break
        else:
            out.append((toks[i], None))
            i += 1
    return out


def _merge_diagonals(items: list[tuple[str, Tag | None]]) -> list[tuple[str, Tag | None]]:
    out: list[tuple[str, Tag | None]] = []
    i = 0
    while i < len(items):
        word, tag = items[i]
        if tag is not None and tag.kind == "D":
            j = i + 1
            while j < len(items) and j - i <= 4 and items[j][0] in _FILLER:
                j += 1
            other = items[j][1] if j < len(items) else None
            crossed_and = any(items[k][0] == "and" for k in range(i + 1, j))
            if other is not None and other.kind == "D" and other.value[0] != tag.value[0]:
                # "moving left and rising blue square": the second word modifies the next object.
                nxt = next((t for _, t in items[j + 1 :] if t is not None), None)
                if not (crossed_and and nxt is not None and nxt.kind in ("C", "Z", "S")):
                    v, h = (tag, other) if tag.value[0] == "v" else (other, tag)
                    name = ("up" if v.value == "v-" else "down") + ("_left" if h.value == "h-" else "_right")
                    out.append((" ".join(w for w, _ in items[i : j + 1]), Tag("D2", name)))
                    i = j + 1
                    continue
        out.append((word, tag))
        i += 1
    return out


def _motion_of(tags: list[Tag]) -> str | None:
    for t in tags:
        if t.kind == "M":
            return t.value
    for t in tags:
        if t.kind == "D2":
            return t.value
    h = next((t.value for t in tags if t.kind == "D" and t.value[0] == "h"), None)
    v = next((t.value for t in tags if t.kind == "D" and t.value[0] == "v"), None)
    hname = {"h-": "left", "h+": "right"}.get(h or "")
    vname = {"v-": "up", "v+": "down"}.get(v or "")
    if hname and vname:
        return f"{vname}_{hname}"
    return hname or vname


def parse_caption(text: str) -> SceneSpec:
    """Parse a caption into a (possibly partial) SceneSpec; raises CaptionParseError."""
    items = _merge_diagonals(tag_caption(text))
    tags: list[Tag | None] = [t for _, t in items]
    bg_colour = next((t.value for t in tags if t is not None and t.kind == "B"), None)
    texture = next((t.value for t in tags if t is not None and t.kind == "X"), None)
    background = None
    if bg_colour is not None or texture is not None:
        background = BackgroundSpec(bg_colour, texture or "plain")
    # Anchors: shape words; a generic noun right after a colour/size is an anchor of unknown shape.
    anchors: list[int] = []
    for i, t in enumerate(tags):
        if t is None:
            continue
        if t.kind == "S":
            anchors.append(i)
        elif t.kind == "G" and i > 0:
            prev = tags[i - 1]
            if prev is not None and prev.kind in ("C", "Z"):
                anchors.append(i)
    if not anchors:
        colours = [i for i, t in enumerate(tags) if t is not None and t.kind == "C"]
        if not colours:
            raise CaptionParseError(f"no object found in caption: {text!r}")
        anchors = [len(tags)]
        tags.append(Tag("G", "object"))
    groups: list[list[Tag]] = [[] for _ in anchors]
    shared: list[Tag] = []

    def keep(t: Tag | None) -> bool:
        return t is not None and t.kind in ("C", "Z", "M", "D", "D2")

    for i in range(anchors[0]):
        if keep(tags[i]):
            groups[0].append(tags[i])  # type: ignore[arg-type]
    for k in range(len(anchors)):
        lo = anchors[k] + 1
        hi = anchors[k + 1] if k + 1 < len(anchors) else len(tags)
        if k + 1 < len(anchors):
            seps = [i for i in range(lo, hi) if tags[i] is not None and tags[i].kind == "SEP"]  # type: ignore[union-attr]
            for i in range(lo, hi):
                t = tags[i]
                if not keep(t):
                    continue
                assert t is not None
                if seps:
                    groups[k if i < seps[-1] else k + 1].append(t)
                elif t.kind in ("C", "Z") or _motion_of(groups[k]) is not None:
                    groups[k + 1].append(t)
                else:
                    groups[k].append(t)
        else:
            both = next((i for i in range(lo, hi) if (ti := tags[i]) is not None and ti.kind == "BOTH"), hi)
            for i in range(lo, hi):
                t = tags[i]
                if keep(t):
                    (groups[k] if i < both else shared).append(t)  # type: ignore[arg-type]
    objects: list[ObjectSpec] = []
    for k, a in enumerate(anchors):
        anchor = tags[a]
        assert anchor is not None
        g = groups[k]
        motion = _motion_of(g) or _motion_of(shared)
        obj = ObjectSpec(
            colour=next((t.value for t in g if t.kind == "C"), None),
            shape=anchor.value if anchor.kind == "S" else None,
            motion=motion,
            size=next((t.value for t in g if t.kind == "Z"), None),
        )
        copies = 1
        if anchor.plural:
            nums = [int(t.value) for t in tags[max(0, a - 4) : a] if t is not None and t.kind == "NUM"]
            copies = nums[-1] if nums else 2
        objects.extend([obj] * copies)
    return SceneSpec(tuple(objects), background)
