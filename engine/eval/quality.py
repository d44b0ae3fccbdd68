"""Picture-quality measures and defect alarms, from pixels (no reference video needed).

* sharpness: variance of the 4-neighbour Laplacian and mean gradient energy of the grey image
  (content dependent: compare against a reference window), and ``edge_width_px``: the
  equivalent linear-ramp width of object edges, 1 / mean |grad f| over the pixels whose mixing
  fraction f (object colour vs background) is between 0.25 and 0.75. Anti-aliased edges measure
  ~2 px, blur sigma 0.8 ~2.5 px, blur sigma 2.5 ~6 px — content independent, so it works on a
  single clip;
* colour: ``colour_error`` = |mean core RGB of the object - prompt palette RGB| / 255;
* flicker: mean |change of the background's mean luminance| between consecutive frames (levels),
  and the mean absolute change of background pixels;
* frozen frames: see ``frozen_pairs``; ``frozen_fraction`` is the share of near-identical
  consecutive pairs. It is an alarm only when the prompt asks for motion (a still scene is
  legitimately frozen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.data.vocab import COLOURS
from engine.data.world import SceneSpec

from .recognise import DetectedObject
from .segment import Labels


@dataclass(frozen=True)
class QualityThresholds:
    edge_width_px: float = 4.5  # blur alarm above this object edge width
    sharpness_drop: float = 0.5  # blur alarm when Laplacian variance < this * reference
    colour_error: float = 0.2  # colour alarm above this |RGB - prompt RGB| / 255
    colour_drift: float = 0.15  # colour alarm when the object colour moved this far from reference
    flicker_luma: float = 1.5  # levels of background mean-luminance change per frame
    frozen_fraction: float = 0.2  # share of near-identical consecutive frames (motion requested)
    frozen_level: float = 3.0  # grey levels
    frozen_pixels: int = 8  # a pair is near-identical if fewer pixels than this exceed the level
    frozen_relative: float = 0.2  # ... or if its change is below this share of the median change


def grey(frames: np.ndarray) -> np.ndarray:
    """Luma-like grey [T, H, W] float32 (Rec. 601 weights)."""
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def laplacian_variance(frames: np.ndarray) -> float:
    g = grey(frames)
    lap = -4 * g[:, 1:-1, 1:-1] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:]
    return float(lap.reshape(lap.shape[0], -1).var(axis=1).mean())


def gradient_energy(frames: np.ndarray) -> float:
    g = grey(frames)
    gx = g[:, 1:-1, 2:] - g[:, 1:-1, :-2]
    gy = g[:, 2:, 1:-1] - g[:, :-2, 1:-1]
    return float(((gx * gx + gy * gy) / 4.0).mean())


def edge_width(
    frames: np.ndarray, labels: Labels, objects: list[DetectedObject], max_frames: int = 6
) -> float | None:
    """Median equivalent ramp width (px) of object edges; None without objects."""
    widths = []
    for obj in objects:
        tr = obj.track
        if tr is None:
            continue
        c = np.array(obj.mean_rgb, dtype=np.float32)  # actual colour: robust to colour defects
        idx = np.nonzero(tr.present)[0]
        for t in idx[np.linspace(0, idx.size - 1, min(max_frames, idx.size)).round().astype(int)]:
            x0, y0, x1, y1 = (int(v) for v in tr.bbox[t])
            h, w = frames.shape[1:3]
            xa, ya, xb, yb = max(0, x0 - 4), max(0, y0 - 4), min(w, x1 + 5), min(h, y1 + 5)
            b = labels.background[t]
            d = c - b
            crop = frames[t, ya:yb, xa:xb].astype(np.float32) - b
            f = crop @ d / max(float(d @ d), 1.0)  # [h, w] mixing fraction
            gy, gx = np.gradient(f)
            mag = np.hypot(gx, gy)
            band = (f > 0.25) & (f < 0.75) & (mag > 1e-3)
            if band.sum() >= 4:
                widths.append(1.0 / float(mag[band].mean()))
    return float(np.median(widths)) if widths else None


def colour_errors(objects: list[DetectedObject], spec: SceneSpec, assign: list[int | None]) -> list[float]:
    """Per expected object with a colour and a matched detection: |mean RGB - prompt RGB| / 255."""
    out = []
    for exp, d in zip(spec.objects, assign, strict=True):
        if exp.colour is None or d is None:
            continue
        want = np.array(COLOURS[exp.colour], dtype=np.float64)
        out.append(float(np.linalg.norm(np.array(objects[d].mean_rgb) - want) / 255.0))
    return out


def flicker(frames: np.ndarray, labels: Labels) -> dict[str, float]:
    """Background luminance jitter between consecutive frames."""
    if frames.shape[0] < 2:
        return {"flicker_luma": 0.0, "background_mad": 0.0}
    g = grey(frames)
    bg = labels.label < 0
    both = bg[1:] & bg[:-1]  # [T-1, H, W]
    n = np.maximum(both.sum(axis=(1, 2)), 1)
    m0 = (g[:-1] * both).sum(axis=(1, 2)) / n
    m1 = (g[1:] * both).sum(axis=(1, 2)) / n
    mad = (np.abs(g[1:] - g[:-1]) * both).sum(axis=(1, 2)) / n
    return {"flicker_luma": float(np.abs(m1 - m0).mean()), "background_mad": float(mad.mean())}


def frozen_pairs(
    frames: np.ndarray, level: float = 3.0, pixels: int = 8, relative: float = 0.2
) -> np.ndarray:
    """[T-1] bool: consecutive frames that are near-identical.

    The change of a pair is the ``pixels``-th largest absolute difference over pixels and RGB
    channels (robust to a few noisy pixels, and blind to no colour). A pair is near-identical
    when that change is at most ``level`` grey levels, or at most ``relative`` times the median
    change of the clip: a codec keeps refining a repeated frame for a few frames, so a stall in
    an H.264 stream shows up as a sudden drop rather than as exact zeros.
    """
    if frames.shape[0] < 2:
        return np.zeros(0, dtype=bool)
    f = frames.astype(np.int16)
    d = np.abs(f[1:] - f[:-1]).max(axis=-1).reshape(frames.shape[0] - 1, -1)
    k = min(pixels, d.shape[1]) - 1
    kth = -np.partition(-d, k, axis=1)[:, k].astype(np.float32)
    return (kth <= level) | (kth <= relative * float(np.median(kth)))


def motion_requested(spec: SceneSpec) -> bool:
    return any(o.motion not in (None, "still") for o in spec.objects)


def quality_measures(
    frames: np.ndarray,
    labels: Labels,
    objects: list[DetectedObject],
    spec: SceneSpec,
    assign: list[int | None],
    thresholds: QualityThresholds | None = None,
) -> dict[str, Any]:
    """All measures for one clip or window, plus the alarms that need no reference."""
    th = thresholds or QualityThresholds()
    ew = edge_width(frames, labels, objects)
    errs = colour_errors(objects, spec, assign)
    fl = flicker(frames, labels)
    frozen = frozen_pairs(frames, th.frozen_level, th.frozen_pixels, th.frozen_relative)
    moving = motion_requested(spec)
    frozen_frac = float(frozen.mean()) if frozen.size else 0.0
    out: dict[str, Any] = {
        "laplacian_var": laplacian_variance(frames),
        "gradient_energy": gradient_energy(frames),
        "edge_width_px": ew,
        "colour_error": float(np.mean(errs)) if errs else None,
        **fl,
        "frozen_fraction": frozen_frac,
        "motion_requested": moving,
        "mean_rgb": [float(v) for v in frames.reshape(-1, 3).mean(axis=0)],
    }
    out["alarms"] = {
        "blur": ew is not None and ew > th.edge_width_px,
        "colour": bool(errs) and max(errs) > th.colour_error,
        "flicker": fl["flicker_luma"] > th.flicker_luma,
        "frozen": moving and frozen_frac > th.frozen_fraction,
    }
    return out
