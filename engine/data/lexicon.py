"""Words for every attribute value: the caption grammar draws from these lists, the parser
recognises them (plus the extra tolerant forms in ``PARSE_EXTRA``).

The first entry of every list is the canonical wording used by ``canonical_caption``. Object
colour words and background colour words are disjoint on purpose ("navy blue", "dark red" and
"forest green" are background colours), so the parser can tell them apart by vocabulary.
"""

from __future__ import annotations

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "ruby"),
    "orange": ("orange", "tangerine", "amber"),
    "yellow": ("yellow", "golden", "lemon"),
    "green": ("green", "emerald", "jade"),
    "cyan": ("cyan", "turquoise", "aqua"),
    "blue": ("blue", "cobalt", "sapphire", "azure"),
    "purple": ("purple", "violet", "amethyst"),
    "white": ("white", "snowy", "ivory", "milky"),
}

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "ball", "dot", "orb"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangular shape"),
}

SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "little"),
    "medium": ("medium", "medium-sized", "mid-sized"),
    "large": ("large", "big", "huge"),
}

# Participle phrases that follow the noun ("a red circle moving left").
MOTION_VP: dict[str, tuple[str, ...]] = {
    "left": ("moving left", "moving to the left", "drifting left", "sliding to the left", "heading left"),
    "right": (
        "moving right",
        "moving to the right",
        "drifting right",
        "sliding to the right",
        "heading right",
    ),
    "up": ("moving up", "moving upward", "rising", "floating up", "drifting upward"),
    "down": ("moving down", "moving downward", "falling", "sinking", "dropping down"),
    "up_left": ("moving up and to the left", "moving diagonally up-left", "drifting toward the top left"),
    "up_right": ("moving up and to the right", "moving diagonally up-right", "drifting toward the top right"),
    "down_left": (
        "moving down and to the left",
        "moving diagonally down-left",
        "drifting toward the bottom left",
    ),
    "down_right": (
        "moving down and to the right",
        "moving diagonally down-right",
        "drifting toward the bottom right",
    ),
    "bouncing": ("bouncing", "bouncing around", "bouncing off the walls", "ricocheting around"),
    "growing": ("growing", "expanding", "getting bigger", "swelling"),
    "shrinking": ("shrinking", "getting smaller", "contracting"),
    "still": ("staying still", "standing still", "not moving", "at rest", "sitting still"),
}

# Adjectives that precede the noun ("a leftward-moving red ball"); diagonals have none.
MOTION_ADJ: dict[str, tuple[str, ...]] = {
    "left": ("leftward-moving", "left-moving"),
    "right": ("rightward-moving", "right-moving"),
    "up": ("rising", "upward-moving", "ascending"),
    "down": ("falling", "downward-moving", "descending"),
    "bouncing": ("bouncing", "bouncy"),
    "growing": ("growing", "expanding"),
    "shrinking": ("shrinking", "contracting"),
    "still": ("motionless", "stationary", "static"),
}

# Finite verb phrases ("a red circle moves left").
MOTION_FIN: dict[str, tuple[str, ...]] = {
    "left": ("moves left", "drifts to the left", "slides left"),
    "right": ("moves right", "drifts to the right", "slides right"),
    "up": ("moves up", "rises", "floats upward"),
    "down": ("moves down", "falls", "sinks"),
    "up_left": ("moves up and to the left", "drifts toward the top left"),
    "up_right": ("moves up and to the right", "drifts toward the top right"),
    "down_left": ("moves down and to the left", "drifts toward the bottom left"),
    "down_right": ("moves down and to the right", "drifts toward the bottom right"),
    "bouncing": ("bounces around", "bounces off the walls"),
    "growing": ("grows", "expands", "gets bigger"),
    "shrinking": ("shrinks", "gets smaller"),
    "still": ("stays still", "does not move", "sits still"),
}

BG_COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "black": ("black", "jet-black", "pitch-black"),
    "gray": ("gray", "grey", "charcoal", "slate"),
    "navy": ("navy", "navy blue", "midnight blue", "dark blue"),
    "maroon": ("maroon", "burgundy", "dark red"),
    "forest": ("forest green", "dark green", "deep green"),
}

# Texture adjectives ("a checkered black background") and nouns ("black stripes").
TEXTURE_ADJ: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "solid", "flat"),
    "checkerboard": ("checkered", "chequered"),
    "stripes": ("striped", "stripy"),
    "noise": ("noisy", "mottled", "grainy"),
}
TEXTURE_NOUN: dict[str, tuple[str, ...]] = {
    "checkerboard": ("checkerboard", "chessboard pattern"),
    "stripes": ("stripes", "striped pattern"),
    "noise": ("noise", "mottled texture"),
}

# Extra forms the parser accepts (never generated): tolerance for hand-written prompts.
PARSE_EXTRA: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": {"red": ("reddish",), "blue": ("bluish",), "green": ("greenish",), "purple": ("magenta",)},
    "shape": {
        "circle": ("disk", "round", "sphere", "circular"),
        "square": ("cube", "squared"),
    },
    "size": {"small": ("wee",), "medium": ("moderate", "average sized"), "large": ("giant", "enormous")},
    "bg": {"black": ("dark",), "gray": ("dark gray", "dark grey")},
}
