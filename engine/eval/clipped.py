"""Shape and size of an object the frame border cuts: fitted, not read off its visible part.

Shape and size are read from frames where the object is whole (``recognise.py``). In an endless
stream translations leave the frame and re-enter on the other side (engine/data/layout.py), so
in a 2-second window an object can be cut by the border in every frame: its visible area
understates its size and its visible outline, placed at its own centroid, matches no template.
Here each shape's template is placed by the object's *free* sides -- the sides of its box the
border does not cut (or centred between two of them) -- for a range of radii and compared with
the mask inside the frame only;
the best radius per shape gives that shape's score (IoU) and the object's equal-area radius.
When the visible part does not determine the radius -- the corner of a square cut by two
borders, the tip of a triangle, each a smaller copy of the whole -- the size is left unread.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from engine.data.shapes import EXTENTS, signed_distance
from engine.data.vocab import SHAPES, SIZES

from .track import Track

# Candidate radii, as fractions of min(H, W): log-spaced, about 8 % apart, from half the smallest
# size class to 1.5x the largest (the size classes are 1.57x apart).
RADIUS_FRACS = np.geomspace(0.5 * min(SIZES.values()), 1.5 * max(SIZES.values()), 25)
SIZE_STEP = 1.25  # half a size class (on a log scale): the boundary between neighbouring classes
IOU_TOLERANCE = 0.02
# The widest any candidate template reaches from its anchored side, as a fraction of min(H, W).
SPAN_FRAC = max(max(e[0] + e[2], e[1] + e[3]) for e in EXTENTS.values()) * float(RADIUS_FRACS[-1])


class Fit(NamedTuple):
    iou: float  # inside the frame
    radius: float  # equal-area radius, px (the smallest that fits best)
    exact: bool  # False: larger templates fit as well, the radius is only a lower bound


def _centres(
    lo: int, hi: int, cut_lo: bool, cut_hi: bool, ext_lo: float, ext_hi: float, r: float
) -> list[float]:
    """Candidate centroid coordinates on one axis for a template of radius ``r``. A side the
    border cuts says nothing; the far side is the object's own, so the template shares it. On an
    axis the border does not cut, the visible box's sides are the object's own or, when another
    border cuts off its widest part (the base of a triangle leaving at the bottom), symmetric
    about it: the template shares either side or is centred. A labelled pixel has its centre
    inside the object, so the object's edge lies within half a pixel of the box edge."""
    near, far = lo + 0.25 + ext_lo * r, hi + 0.75 - ext_hi * r
    if cut_lo:
        return [far]
    if cut_hi:
        return [near]
    return [near, far, (lo + hi + 1) / 2]


def _window(lo: int, hi: int, cut_lo: bool, cut_hi: bool, span: int, limit: int) -> tuple[int, int]:
    """Pixel range [a, b] on one axis that holds every candidate template placed as above."""
    if cut_lo:
        return max(0, hi - span), hi
    if cut_hi:
        return lo, min(limit - 1, lo + span)
    return max(0, hi - span), min(limit - 1, lo + span)


def fit_clipped(track: Track, t: int, width: int, height: int) -> dict[str, Fit] | None:
    """Per shape, the template that fits the object's mask in frame ``t`` best, placed by the
    box's free sides. None when the border cuts both sides of an axis (the object is wider than
    the frame: nothing anchors it)."""
    x0, y0, x1, y1 = (int(v) for v in track.bbox[t])
    cut_l, cut_r = x0 <= 0, x1 >= width - 1
    cut_t, cut_b = y0 <= 0, y1 >= height - 1
    if (cut_l and cut_r) or (cut_t and cut_b):
        return None
    unit = float(min(width, height))
    span = math.ceil(SPAN_FRAC * unit)
    # Window: every candidate template's part inside the frame (a template extends from the
    # anchored side by at most `span`).
    wx0, wx1 = _window(x0, x1, cut_l, cut_r, span, width)
    wy0, wy1 = _window(y0, y1, cut_t, cut_b, span, height)
    w, h = wx1 - wx0 + 1, wy1 - wy0 + 1
    mask = track.comps.mask(int(track.comp[t]), wx0, wy0, w, h)
    area = np.count_nonzero(mask)
    px = np.arange(w, dtype=np.float32) + wx0 + 0.5
    py = np.arange(h, dtype=np.float32) + wy0 + 0.5
    out = {}
    for s in SHAPES:
        left, top, right, bottom = EXTENTS[s]
        ious = np.zeros(len(RADIUS_FRACS))
        for k, frac in enumerate(RADIUS_FRACS):
            r = float(frac) * unit
            for cx in _centres(x0, x1, cut_l, cut_r, left, right, r):
                for cy in _centres(y0, y1, cut_t, cut_b, top, bottom, r):
                    dx = ((px - cx) / r)[None, :]
                    dy = ((py - cy) / r)[:, None]
                    tpl = signed_distance(s, np.broadcast_to(dx, (h, w)), np.broadcast_to(dy, (h, w))) <= 0
                    inter = np.count_nonzero(mask & tpl)
                    union = area + np.count_nonzero(tpl) - inter
                    ious[k] = max(ious[k], inter / union if union else 0.0)
        best = int(np.argmax(ious))  # the smallest radius of the best fit
        # A template a size class larger (x1.25, the class boundary) that fits as well means the
        # visible part does not tell the size (a corner of a square, the tip of a triangle).
        larger = SIZE_STEP * RADIUS_FRACS[best] <= RADIUS_FRACS
        exact = not larger.any() or float(ious[larger].max()) < ious[best] - IOU_TOLERANCE
        out[s] = Fit(float(ious[best]), float(RADIUS_FRACS[best]) * unit, exact)
    return out


def clipped_shape_and_size(
    track: Track, frames: np.ndarray, width: int, height: int
) -> tuple[dict[str, float], float | None] | None:
    """Mean IoU per shape over ``frames`` (indices of unoccluded frames) and the best shape's
    median radius (px) over the frames that determine it (None when none does), from
    :func:`fit_clipped`; None when no frame can be fitted."""
    fits = [f for f in (fit_clipped(track, int(t), width, height) for t in frames) if f is not None]
    if not fits:
        return None
    scores = {s: float(np.mean([f[s].iou for f in fits])) for s in SHAPES}
    shape = max(scores, key=lambda s: scores[s])
    radii = [f[shape].radius for f in fits if f[shape].exact]
    return scores, float(np.median(radii)) if radii else None
