"""Pixels -> labelled object pixels -> connected components.

Object pixels are found with a *mixing model* instead of hue thresholds. Every object edge pixel
(anti-aliasing, blur, H.264 smoothing) is close to a mix ``p = b + f (c - b)`` of the local
background ``b`` and one palette colour ``c``. For each candidate pixel and each palette colour we
project ``p - b`` onto ``c - b``: the fraction ``f`` says how much of the pixel the object covers
and the perpendicular residual says how well that colour explains it. A pixel belongs to the
colour with the smallest residual, and counts as object when ``f >= 0.5`` — the 50 % iso-line of
a symmetrically blurred edge is the true edge, so areas (and size classes) survive blur. This
also keeps hue stable on coloured backgrounds (red over navy is purple-ish at the edge; the
mixing model still explains it as red).

Connected components (8-connectivity) are computed on run-length encoded rows with a small
union-find: objects are a few dozen rows tall, so a clip has a few thousand runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.data.vocab import COLOUR_NAMES, COLOURS

PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.float32)  # [K, 3]


@dataclass(frozen=True)
class SegmentConfig:
    fg_fraction: float = 0.5  # mixing fraction at which a pixel is object
    gate: float = 0.3  # skip pixels closer to the background than gate * min_k |c_k - b|
    bg_stride: int = 4  # background median over every bg_stride-th pixel


@dataclass(frozen=True)
class Labels:
    """Per-pixel labels for a clip."""

    label: np.ndarray  # [T, H, W] int8: palette index, -1 = background
    frac: np.ndarray  # [T, H, W] float32: mixing fraction for the chosen colour (0 on background)
    background: np.ndarray  # [T, 3] float32: per-frame background colour estimate


def estimate_background(frames: np.ndarray, stride: int = 4) -> np.ndarray:
    """Per-frame background colour [T, 3]: channel medians over a pixel grid. Objects cover far
    less than half of the frame, so the median is a background pixel (mid-texture if textured)."""
    sub = frames[:, ::stride, ::stride, :].reshape(frames.shape[0], -1, 3)
    return np.median(sub, axis=1).astype(np.float32)


def label_pixels(frames: np.ndarray, config: SegmentConfig | None = None) -> Labels:
    """Assign every pixel of uint8 frames [T, H, W, 3] to a palette colour or the background."""
    cfg = config or SegmentConfig()
    t_n, h, w, _ = frames.shape
    bg = estimate_background(frames, cfg.bg_stride)  # [T, 3]
    dirs = PALETTE[None, :, :] - bg[:, None, :]  # [T, K, 3]
    norm2 = np.maximum((dirs * dirs).sum(-1), 1.0)  # [T, K]
    gate = cfg.gate * np.sqrt(norm2.min(axis=1))  # [T]
    label = np.full((t_n, h, w), -1, dtype=np.int8)
    frac = np.zeros((t_n, h, w), dtype=np.float32)
    for t in range(t_n):
        diff = frames[t].astype(np.float32) - bg[t]  # [H, W, 3]
        dist2 = np.einsum("hwc,hwc->hw", diff, diff)
        yi, xi = np.nonzero(dist2 > gate[t] * gate[t])
        if yi.size == 0:
            continue
        p = diff[yi, xi]  # [N, 3]
        dot = p @ dirs[t].T  # [N, K]
        f = dot / norm2[t]
        resid2 = dist2[yi, xi][:, None] - f * dot  # |p|^2 - (p.d)^2 / |d|^2
        resid2[f <= 0] = np.inf
        k = np.argmin(resid2, axis=1)
        fk = f[np.arange(k.size), k]
        keep = fk >= cfg.fg_fraction
        label[t, yi[keep], xi[keep]] = k[keep]
        frac[t, yi[keep], xi[keep]] = fk[keep]
    return Labels(label, frac, bg)


@dataclass(frozen=True)
class Components:
    """Connected components of a [T, H, W] mask, with run-length rows.

    Runs: ``run_t``, ``run_y``, ``run_x0``, ``run_x1`` (exclusive) and ``run_comp`` (component id).
    Per component (arrays [C]): ``t``, ``area``, ``cx``, ``cy`` (centroid of pixel centres),
    ``x0``, ``y0``, ``x1``, ``y1`` (inclusive bbox).
    """

    run_t: np.ndarray
    run_y: np.ndarray
    run_x0: np.ndarray
    run_x1: np.ndarray
    run_comp: np.ndarray
    t: np.ndarray
    area: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray

    def __len__(self) -> int:
        return int(self.area.size)

    def mask(self, comp: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Binary mask [h, w] of component ``comp`` in the window with top-left (x0, y0)."""
        out = np.zeros((h, w), dtype=bool)
        for i in np.nonzero(self.run_comp == comp)[0]:
            y = int(self.run_y[i]) - y0
            if 0 <= y < h:
                a, b = max(0, int(self.run_x0[i]) - x0), min(w, int(self.run_x1[i]) - x0)
                if a < b:
                    out[y, a:b] = True
        return out


def connected_components(mask: np.ndarray) -> Components:
    """8-connected components of each frame of a boolean mask [T, H, W]."""
    t_n, h, w = mask.shape
    pad = np.zeros((t_n * h, w + 2), dtype=np.int8)
    pad[:, 1:-1] = mask.reshape(t_n * h, w)
    d = np.diff(pad, axis=1)
    rows, x0 = np.nonzero(d == 1)
    _, x1 = np.nonzero(d == -1)
    n = rows.size
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    starts = np.searchsorted(rows, np.arange(t_n * h + 1)).tolist()
    rl, x0l, x1l = rows.tolist(), x0.tolist(), x1.tolist()
    for i in range(n):
        r = rl[i]
        if r % h == 0:
            continue
        for j in range(starts[r - 1], starts[r]):
            if x0l[j] <= x1l[i] and x0l[i] <= x1l[j]:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    uniq, comp = np.unique(roots, return_inverse=True)
    c_n = uniq.size
    length = (x1 - x0).astype(np.float64)
    run_y = rows % h
    run_t = rows // h
    area = np.bincount(comp, weights=length, minlength=c_n)
    # Sum of pixel-centre x over a run [x0, x1): length * (x0 + x1) / 2.
    sx = np.bincount(comp, weights=length * (x0 + x1) / 2.0, minlength=c_n)
    sy = np.bincount(comp, weights=length * (run_y + 0.5), minlength=c_n)
    bx0 = np.full(c_n, np.iinfo(np.int64).max)
    by0 = np.full(c_n, np.iinfo(np.int64).max)
    bx1 = np.full(c_n, -1)
    by1 = np.full(c_n, -1)
    np.minimum.at(bx0, comp, x0)
    np.minimum.at(by0, comp, run_y)
    np.maximum.at(bx1, comp, x1 - 1)
    np.maximum.at(by1, comp, run_y)
    ct = np.zeros(c_n, dtype=np.int64)
    ct[comp] = run_t
    safe = np.maximum(area, 1.0)
    return Components(run_t, run_y, x0, x1, comp, ct, area, sx / safe, sy / safe, bx0, by0, bx1, by1)


def component_image(comps: Components, shape: tuple[int, int, int]) -> np.ndarray:
    """Component id per pixel [T, H, W] int32 (-1 outside every component)."""
    t_n, h, w = shape
    out = np.full(t_n * h * w, -1, dtype=np.int32)
    lengths = comps.run_x1 - comps.run_x0
    if lengths.size:
        starts = (comps.run_t * h + comps.run_y) * w + comps.run_x0
        offsets = np.cumsum(lengths) - lengths
        idx = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
        out[idx] = np.repeat(comps.run_comp, lengths)
    return out.reshape(t_n, h, w)


def clean_labels(
    labels: Labels, min_share: float = 0.2, min_pixels: int = 6, object_pixels: int = 32
) -> Labels:
    """Give every blob one colour unless it really holds several.

    Per-pixel colour is unreliable on an object's rim: chroma subsampling (H.264 4:2:0) and
    blur mix the background's chroma into edge pixels, so an orange square can get a 1-px rim
    labelled yellow. Here every connected blob of object pixels (any colour) is recoloured by the
    labels of its *interior* pixels (all four neighbours are object pixels): a colour survives if
    it holds at least ``min_share`` of the interior or at least ``object_pixels`` interior pixels
    (a small object touching a large one), every other pixel of the blob takes the blob's
    majority colour. A rim is one pixel wide, so it has (almost) no interior pixels.
    """
    lab = labels.label
    fg = lab >= 0
    comps = connected_components(fg)
    if len(comps) == 0:
        return labels
    cid = component_image(comps, lab.shape)
    inner = fg.copy()
    inner[:, 1:] &= fg[:, :-1]
    inner[:, :-1] &= fg[:, 1:]
    inner[:, :, 1:] &= fg[:, :, :-1]
    inner[:, :, :-1] &= fg[:, :, 1:]
    k_n = PALETTE.shape[0]
    c_n = len(comps)
    hist_in = np.bincount(cid[inner] * k_n + lab[inner], minlength=c_n * k_n).reshape(c_n, k_n)
    hist_all = np.bincount(cid[fg] * k_n + lab[fg], minlength=c_n * k_n).reshape(c_n, k_n)
    use_in = hist_in.sum(1, keepdims=True) >= min_pixels
    hist = np.where(use_in, hist_in, hist_all).astype(np.float64)
    share = hist / np.maximum(hist.sum(1, keepdims=True), 1.0)
    majority = np.argmax(hist, axis=1)  # [C]
    keep = ((share >= min_share) & (hist >= min_pixels)) | (hist_in >= object_pixels)  # [C, K]
    keep[np.arange(c_n), majority] = True
    table = np.where(keep, np.arange(k_n)[None, :], majority[:, None]).astype(np.int8)  # [C, K]
    new = lab.copy()
    new[fg] = table[cid[fg], lab[fg]]
    return Labels(new, labels.frac, labels.background)
