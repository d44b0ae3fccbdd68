"""The closed vocabulary of the synthetic world: colours, shapes, sizes, motions, backgrounds.

Everything that the renderer draws and the evaluator recognises is named here, in a fixed
canonical order. The order matters: the held-out rule in :mod:`engine.data.splits` is defined on
the indices of these tuples, so appending is safe but reordering changes the split.

Object colours are saturated and bright; background colours are dark. The evaluator separates
objects from the background with a linear mixing model (pixel = b + f * (c - b)), which only
works if every object colour is far from every background colour — keep it that way when adding
entries. Sizes are *equal-area radii* as a fraction of min(H, W): a small circle and a small triangle
cover the same number of pixels, so the evaluator can read the size class from the area alone.
"""

from __future__ import annotations

import math

# Object palette (RGB uint8). Hues: red 357, orange 29, yellow 54, green 126, cyan 183,
# blue 223, purple 270; white is achromatic.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 40),
    "orange": (255, 125, 0),
    "yellow": (250, 228, 30),
    "green": (40, 200, 60),
    "cyan": (30, 215, 225),
    "blue": (40, 90, 255),
    "purple": (165, 60, 235),
    "white": (240, 240, 240),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Equal-area radius as a fraction of min(H, W). Neighbouring classes differ by ~1.57x, so a
# +-19 % size excursion (growing/shrinking) keeps the median inside its class. At 128x128 a
# medium object is ~40 px across (5 latent pixels of the tiny VAE): large enough that its shape
# is a coarse feature for a small diffusion model, not a sub-latent-pixel detail.
SIZES: dict[str, float] = {"small": 0.10, "medium": 0.157, "large": 0.247}
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)

# Image coordinates: x to the right, y DOWN (so "up" is -y).
_D = 1.0 / math.sqrt(2.0)
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up_left": (-_D, -_D),
    "up_right": (_D, -_D),
    "down_left": (-_D, _D),
    "down_right": (_D, _D),
}
MOTIONS: tuple[str, ...] = (*DIRECTIONS, "bouncing", "growing", "shrinking", "still")
TRANSLATIONS: frozenset[str] = frozenset(DIRECTIONS)

BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 14),
    "gray": (62, 62, 66),
    "navy": (16, 22, 72),
    "maroon": (74, 16, 26),
    "forest": (16, 62, 32),
}
BACKGROUND_COLOUR_NAMES: tuple[str, ...] = tuple(BACKGROUND_COLOURS)
TEXTURES: tuple[str, ...] = ("plain", "checkerboard", "stripes", "noise")

# Motion speeds in units of min(H, W) per second.
LINEAR_SPEED: tuple[float, float] = (0.12, 0.18)
BOUNCE_SPEED: tuple[float, float] = (0.45, 0.60)
# Growing/shrinking: log-radius rate per second; the radius changes by sqrt(2) every 2 s.
GROWTH_RATE: float = math.log(math.sqrt(2.0)) / 2.0
# In endless streams the log-radius is a sawtooth spanning a factor GROWTH_SPAN around nominal.
GROWTH_SPAN: float = 2.0
