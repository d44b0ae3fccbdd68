"""Shape geometry shared by the renderer and the evaluator's templates.

Every shape is described in *unit radius* coordinates: its area equals that of a circle of
radius 1 (pi), its area centroid is the origin, y points down. So a shape drawn "at (cx, cy)
with radius R" covers pi R^2 pixels and has its centroid at (cx, cy) — the evaluator can invert
both directly from a pixel mask.

Polygons are symmetric under n-fold rotation plus a mirror, so the signed distance is computed by
folding the polar angle into one wedge of width pi/n and measuring the distance to a single edge
(from an outer vertex A at angle 0 to the edge midpoint B at angle pi/n). That is exact, needs
one atan2 per pixel, and costs the same for a triangle as for a square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Wedge:
    """A regular polygon as n-fold symmetric wedge: vertex radius ``ra`` at ``phase``, radius
    ``rb`` at ``phase + pi/n`` (the edge midpoint)."""

    n: int
    phase: float
    ra: float
    rb: float


def _regular(n: int, phase_deg: float) -> Wedge:
    # Regular n-gon of area pi: area = n/2 * Rc^2 * sin(2 pi / n).
    rc = math.sqrt(2.0 * math.pi / (n * math.sin(2.0 * math.pi / n)))
    return Wedge(n, math.radians(phase_deg), rc, rc * math.cos(math.pi / n))


WEDGES: dict[str, Wedge] = {
    "square": _regular(4, 45.0),
    "triangle": _regular(3, -90.0),  # apex up
}


def signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Signed distance (unit-radius units, negative inside) at offsets (dx, dy) from the centroid.

    Written with plain arithmetic (no np.mod / np.hypot / np.where, which are several times
    slower than multiply-add on float32 arrays): this is the renderer's inner loop.
    """
    rho = np.sqrt(dx * dx + dy * dy)
    if shape == "circle":
        return rho - 1.0
    w = WEDGES[shape]
    sector = 2.0 * math.pi / w.n
    phi = np.arctan2(dy, dx) - w.phase
    phi -= sector * np.floor(phi / sector)
    phi = sector / 2.0 - np.abs(phi - sector / 2.0)  # mirror into [0, sector / 2]
    qx = rho * np.cos(phi)
    qy = rho * np.sin(phi)
    ax = w.ra
    bx, by = w.rb * math.cos(sector / 2.0), w.rb * math.sin(sector / 2.0)
    ex, ey = bx - ax, by
    ee = ex * ex + ey * ey
    t = np.clip(((qx - ax) * ex + qy * ey) * (1.0 / ee), 0.0, 1.0)
    px, py = qx - ax - t * ex, qy - t * ey
    dist = np.sqrt(px * px + py * py)
    # The origin is inside; a point is inside when it lies on the origin's side of edge AB.
    side = ex * qy - ey * (qx - ax)
    origin_side = ey * ax
    outside = (side * origin_side) < 0
    return dist * (2.0 * outside.astype(dist.dtype) - 1.0)


def coverage(shape: str, dx: np.ndarray, dy: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] for pixel-centre offsets (dx, dy) in pixels.

    The signed distance in pixels is mapped through a one-pixel linear ramp, an analytic stand-in
    for box-filter supersampling that costs nothing extra.
    """
    r = np.asarray(radius, dtype=np.float32)
    sd = signed_distance(shape, dx / r, dy / r) * r
    return np.clip(0.5 - sd, 0.0, 1.0).astype(np.float32)


def _extents(shape: str) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) distances from the centroid to the bounding box, unit radius."""
    if shape == "circle":
        return (1.0, 1.0, 1.0, 1.0)
    w = WEDGES[shape]
    angles = w.phase + np.arange(2 * w.n) * math.pi / w.n
    radii = np.where(np.arange(2 * w.n) % 2 == 0, w.ra, w.rb)
    # For regular polygons the odd points are edge midpoints, inside the hull: harmless here.
    xs, ys = radii * np.cos(angles), radii * np.sin(angles)
    return (float(-xs.min()), float(-ys.min()), float(xs.max()), float(ys.max()))


EXTENTS: dict[str, tuple[float, float, float, float]] = {
    s: _extents(s) for s in ("circle", "square", "triangle")
}


def bounding_radius(shape: str) -> float:
    """Largest distance from the centroid to the outline, unit radius."""
    return 1.0 if shape == "circle" else WEDGES[shape].ra
