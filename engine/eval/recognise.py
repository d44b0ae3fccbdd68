"""Recover the scene from pixels: objects with colour, shape, size and motion.

Pipeline: label pixels with the mixing model (``segment.py``) -> connected components per colour
-> tracks (``track.py``) -> per track:

* colour: the palette colour of its pixels; ``mean_rgb`` is the mean of its core pixels (mixing
  fraction >= 0.9), used by colour-stability measures;
* shape: template matching. Shapes are drawn upright with their area centroid at the object
  position and with area pi R^2 (``engine.data.shapes``), so each candidate template is placed at
  the mask centroid with R = sqrt(area / pi) and scored by IoU; the best mean IoU over up to
  ``shape_frames`` clean frames wins. Blur rounds corners but moves the 50 % iso-line little, so
  this holds up under blur and compression;
* size: median equal-area radius over clean frames -> nearest class on a log scale;
* motion: ``motion.classify_motion`` on the box-centre and radius tracks.

"Clean" frames are those where the object is fully inside the frame and no other object's pixels
come within 2 px of it (no occlusion possible). Shape and size use clean frames; with fewer than
3 (a stream's object crossing the border), templates anchored on the free sides of its box in
the unoccluded frames (``clipped.py``); occluded throughout, the frames inside the frame whose
masks fit a template best (the intact ones) and the upper quartile of the area. The motion track
follows the centre of the object's box (from its free side and unclipped extent while the frame
border clips it) in every frame where the object is not touching another one or is *intact* (its
area matches the clean-frame area interpolated in time: it is the one drawn on top), so an
occluder dragging the visible part of an object around cannot fake a bounce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.data.shapes import bounding_radius, signed_distance
from engine.data.vocab import BACKGROUND_COLOURS, COLOUR_NAMES, SHAPES, SIZES

from .clipped import clipped_shape_and_size
from .motion import MotionConfig, MotionEstimate, classify_motion
from .segment import Labels, SegmentConfig, clean_labels, connected_components, label_pixels
from .track import Track, build_tracks, inside_frame, touching_others

_SIZE_NAMES = tuple(SIZES)
_LOG_SIZES = np.log(np.array([SIZES[s] for s in _SIZE_NAMES]))


@dataclass(frozen=True)
class RecogniseConfig:
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    min_area_frac: float = 0.25  # components smaller than this * (smallest object area) are noise
    min_presence: float = 0.5  # an object must be visible in at least this share of frames
    shape_frames: int = 8
    core_fraction: float = 0.9


@dataclass
class DetectedObject:
    colour: str
    shape: str
    size: str | None  # None: the frame border hides how large it is (clipped.py)
    motion: str
    size_frac: float  # median equal-area radius / min(H, W); NaN when the size is not read
    velocity: tuple[float, float]  # units/s
    growth_rate: float  # d log r / dt
    mean_rgb: tuple[float, float, float]
    shape_scores: dict[str, float]
    presence: float  # share of frames where visible
    n_clean: int
    inside: float  # share of the frames where it is visible that show it whole (off the border)
    track: Track | None = field(default=None, repr=False, compare=False)

    def attributes(self) -> dict[str, str | None]:
        return {"colour": self.colour, "shape": self.shape, "size": self.size, "motion": self.motion}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.attributes(),
            "size_frac": round(self.size_frac, 4) if math.isfinite(self.size_frac) else None,
            "velocity": [round(v, 4) for v in self.velocity],
            "growth_rate": round(self.growth_rate, 4),
            "mean_rgb": [round(c, 1) for c in self.mean_rgb],
            "shape_scores": {k: round(v, 3) for k, v in self.shape_scores.items()},
            "presence": round(self.presence, 3),
            "n_clean": self.n_clean,
            "inside": round(self.inside, 3),
        }


def size_class(size_frac: float) -> str:
    """Nearest size class on a log scale (class boundaries at geometric means)."""
    if not size_frac > 0:
        return _SIZE_NAMES[0]
    return _SIZE_NAMES[int(np.argmin(np.abs(_LOG_SIZES - math.log(size_frac))))]


def shape_scores_at(track: Track, t: int) -> dict[str, float]:
    """IoU of the object's mask in frame ``t`` with every shape template placed at its centroid."""
    area = float(track.area[t])
    r = math.sqrt(area / math.pi)
    cx, cy = float(track.cx[t]), float(track.cy[t])
    reach = max(bounding_radius(s) for s in SHAPES) * r + 2.0
    x0b, y0b, x1b, y1b = (int(v) for v in track.bbox[t])
    x0 = min(x0b, math.floor(cx - reach)) - 1
    y0 = min(y0b, math.floor(cy - reach)) - 1
    x1 = max(x1b, math.ceil(cx + reach)) + 1
    y1 = max(y1b, math.ceil(cy + reach)) + 1
    w, h = x1 - x0 + 1, y1 - y0 + 1
    mask = track.comps.mask(int(track.comp[t]), x0, y0, w, h)
    gx = (np.arange(w, dtype=np.float32) + x0 + 0.5 - cx) / r
    gy = (np.arange(h, dtype=np.float32) + y0 + 0.5 - cy) / r
    dx, dy = np.broadcast_to(gx[None, :], (h, w)), np.broadcast_to(gy[:, None], (h, w))
    out = {}
    for s in SHAPES:
        tpl = signed_distance(s, dx, dy) <= 0
        inter = np.count_nonzero(mask & tpl)
        union = np.count_nonzero(mask | tpl)
        out[s] = inter / union if union else 0.0
    return out


def _clipped_fit(
    track: Track, unoccluded: np.ndarray, width: int, height: int, n: int
) -> tuple[dict[str, float], float | None] | None:
    """Shape scores and radius (px; None when the border hides it) from the ``n`` unoccluded
    frames where the most of the object shows, fitted with the frame border taken into account;
    None without such frames."""
    idx = np.nonzero(unoccluded)[0]
    if idx.size == 0:
        return None
    largest = idx[np.argsort(-track.area[idx], kind="stable")[:n]]
    return clipped_shape_and_size(track, np.sort(largest), width, height)


def _pick_frames(ok: np.ndarray, n: int) -> np.ndarray:
    idx = np.nonzero(ok)[0]
    if idx.size <= n:
        return idx
    return idx[np.linspace(0, idx.size - 1, n).round().astype(int)]


def _box_centre(tr: Track, size_ok: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre [T] of the object's box per axis, also while the frame border clips it: from the
    free side and the object's unclipped extent. (A clipped object's visible centroid lags behind
    it: a large object wrapping around an endless stream's frame would seem to move at half its
    speed.) NaN where both sides of an axis touch the border or the object is absent."""
    b = tr.bbox
    centres = []
    for lo, hi, limit in ((b[:, 0], b[:, 2], width - 1), (b[:, 1], b[:, 3], height - 1)):
        with np.errstate(invalid="ignore"):
            at_lo, at_hi = lo <= 0, hi >= limit
        extent = hi - lo
        full = size_ok & ~at_lo & ~at_hi
        half = float(np.nanmedian(extent[full] if full.any() else extent[tr.present])) / 2
        centre = np.where(at_lo, hi - half, np.where(at_hi, lo + half, (lo + hi) / 2))
        centres.append(np.where(at_lo & at_hi, np.nan, centre))
    return centres[0], centres[1]


def _motion_frames(present: np.ndarray, unoccluded: np.ndarray) -> np.ndarray:
    """Frames [T] whose position follows the object: not occluded, unless fewer than a quarter are."""
    ok = present & unoccluded
    return ok if ok.mean() >= 0.25 else present


def _intact(area: np.ndarray, clean: np.ndarray, tolerance: float = 0.93) -> np.ndarray:
    """Frames [T] where the object shows (almost) its full area: compared with the area of the
    clean frames interpolated in time (so growth is followed). An object touching another one
    but drawn on top of it is intact and its centroid can be trusted; the one underneath is not."""
    idx = np.nonzero(clean)[0]
    if idx.size < 2:
        return np.zeros(area.shape, dtype=bool)
    expected = np.interp(np.arange(area.size), idx, area[idx])
    with np.errstate(invalid="ignore"):
        return area >= tolerance * expected


def _mean_core_rgb(
    frames: np.ndarray, labels: Labels, track: Track, ts: np.ndarray, core: float
) -> tuple[float, ...]:
    acc = np.zeros(3)
    n = 0
    for t in ts:
        x0, y0, x1, y1 = (int(v) for v in track.bbox[t])
        lab = labels.label[t, y0 : y1 + 1, x0 : x1 + 1] == track.colour_index
        sel = lab & (labels.frac[t, y0 : y1 + 1, x0 : x1 + 1] >= core)
        if not sel.any():
            sel = lab
        px = frames[t, y0 : y1 + 1, x0 : x1 + 1][sel]
        acc += px.sum(axis=0)
        n += px.shape[0]
    return tuple(float(v) for v in acc / max(n, 1))


def recognise_tracks(
    frames: np.ndarray, fps: float, config: RecogniseConfig | None = None
) -> tuple[list[DetectedObject], Labels]:
    """Like :func:`recognise_clip`, also returning the pixel labels (for quality measures)."""
    cfg = config or RecogniseConfig()
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.shape} {frames.dtype}")
    t_n, h, w, _ = frames.shape
    unit = float(min(h, w))
    smallest = math.pi * (min(SIZES.values()) * unit) ** 2 / 2.0  # small object shrunk to 1/sqrt(2)
    min_area = max(4.0, cfg.min_area_frac * smallest)
    labels = clean_labels(label_pixels(frames, cfg.segment), object_pixels=round(min_area))
    tracks: list[Track] = []
    present = np.nonzero(np.bincount(labels.label.ravel().astype(np.int64) + 1)[1:])[0]
    for k in present:
        comps = connected_components(labels.label == k)
        tracks.extend(build_tracks(comps, int(k), t_n, min_area, cfg.min_presence))
    objects = []
    for i, tr in enumerate(tracks):
        touch = touching_others(tracks, i, labels.label)
        inside = inside_frame(tr, w, h)
        clean = inside & ~touch
        unoccluded = tr.present & ~touch
        radius = np.sqrt(tr.area / math.pi)
        if clean.sum() >= 3:
            size_ok, shape_ts = clean, _pick_frames(clean, cfg.shape_frames)
            per_frame = [shape_scores_at(tr, int(t)) for t in shape_ts]
            size_frac = float(np.nanmedian(radius[clean])) / unit
        elif (clipped := _clipped_fit(tr, unoccluded, w, h, cfg.shape_frames)) is not None:
            # Whole in fewer than 3 frames, mostly because the frame border cuts it (a stream's
            # object crossing it): templates anchored on the box's free sides (clipped.py).
            size_ok = inside if inside.any() else tr.present
            shape_ts = _pick_frames(unoccluded, cfg.shape_frames)
            per_frame = [clipped[0]]
            size_frac = clipped[1] / unit if clipped[1] is not None else math.nan
        else:
            # Occluded throughout: trust the frames where the mask fits some template best (the
            # intact ones) and the larger areas.
            size_ok = inside if inside.any() else tr.present
            shape_ts = _pick_frames(size_ok, 2 * cfg.shape_frames)
            per_frame = [shape_scores_at(tr, int(t)) for t in shape_ts]
            order = np.argsort([-max(p.values()) for p in per_frame])
            keep = order[: max(1, (len(order) + 1) // 2)]
            per_frame = [per_frame[k] for k in keep]
            shape_ts = shape_ts[keep]
            size_frac = float(np.nanpercentile(radius[size_ok], 75)) / unit
        scores = {s: float(np.mean([p[s] for p in per_frame])) for s in SHAPES}
        shape = max(scores, key=lambda s: scores[s])
        cx, cy = _box_centre(tr, size_ok, w, h)
        motion_ok = _motion_frames(tr.present & ~np.isnan(cx + cy), ~touch | _intact(tr.area, clean))
        est: MotionEstimate = classify_motion(cx, cy, radius, motion_ok, size_ok, fps, unit, cfg.motion)
        rgb = _mean_core_rgb(frames, labels, tr, shape_ts, cfg.core_fraction)
        objects.append(
            DetectedObject(
                colour=COLOUR_NAMES[tr.colour_index],
                shape=shape,
                size=size_class(size_frac) if math.isfinite(size_frac) else None,
                motion=est.motion,
                size_frac=size_frac,
                velocity=est.velocity,
                growth_rate=est.growth_rate,
                mean_rgb=(rgb[0], rgb[1], rgb[2]),
                shape_scores=scores,
                presence=float(tr.present.mean()),
                n_clean=int(clean.sum()),
                inside=float(inside.sum() / max(1, tr.present.sum())),
                track=tr,
            )
        )
    objects.sort(key=lambda o: -float(np.nanmedian(o.track.area)) if o.track is not None else 0.0)
    return objects, labels


def recognise_clip(
    frames: np.ndarray, fps: float = 16.0, config: RecogniseConfig | None = None
) -> list[DetectedObject]:
    """Detect the objects in uint8 RGB frames [T, H, W, 3] (largest first)."""
    return recognise_tracks(frames, fps, config)[0]


def classify_background(frames: np.ndarray, labels: Labels) -> dict[str, Any]:
    """Background colour (nearest dark palette entry to the median background) and texture.

    Texture features on the temporal median frame, object pixels masked out: local contrast
    (plain vs textured), orientation coherence of the structure tensor (stripes), and the share of
    flat pixels (checkerboard cells are flat, value noise is not).
    """
    bg = np.median(labels.background, axis=0)
    names = list(BACKGROUND_COLOURS)
    ref = np.array([BACKGROUND_COLOURS[n] for n in names], dtype=np.float32)
    colour = names[int(np.argmin(((ref - bg) ** 2).sum(1)))]
    pick = np.unique(np.linspace(0, frames.shape[0] - 1, min(7, frames.shape[0])).round().astype(int))
    med = np.median(frames[pick].astype(np.float32).mean(-1), axis=0)  # [H, W] luminance
    obj = (labels.label[pick] >= 0).any(axis=0)
    # Box blur 5x5 to suppress pixel noise, then gradients.
    k = 5
    pad = np.pad(med, k // 2, mode="edge")
    cs = pad.cumsum(0).cumsum(1)
    cs = np.pad(cs, ((1, 0), (1, 0)))
    blur = (cs[k:, k:] - cs[:-k, k:] - cs[k:, :-k] + cs[:-k, :-k]) / (k * k)
    gy, gx = np.gradient(blur)
    grown = obj.copy()
    for _ in range(4):  # dilate the object mask so object edges do not count as texture
        grown[1:] |= grown[:-1].copy()
        grown[:-1] |= grown[1:].copy()
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
    sel = ~grown
    sel[:3], sel[-3:], sel[:, :3], sel[:, -3:] = False, False, False, False
    if sel.sum() < 64:
        return {"colour": colour, "texture": "plain", "contrast": 0.0, "coherence": 0.0, "flat": 1.0}
    contrast = float(blur[sel].std())
    jxx, jyy, jxy = float((gx[sel] ** 2).sum()), float((gy[sel] ** 2).sum()), float((gx[sel] * gy[sel]).sum())
    coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / max(jxx + jyy, 1e-9)
    mag = np.hypot(gx[sel], gy[sel])
    flat = float(np.mean(mag < 0.25 * np.percentile(mag, 95)))
    if contrast < 2.5:
        texture = "plain"
    elif coherence > 0.6:
        texture = "stripes"
    elif flat > 0.32:
        texture = "checkerboard"
    else:
        texture = "noise"
    return {"colour": colour, "texture": texture, "contrast": contrast, "coherence": coherence, "flat": flat}
