"""Components of one colour across frames -> object tracks.

Two-object scenes of the synthetic world always use two colours, so colour is the primary key;
within one colour the number of objects is the median number of simultaneous components (so a
model that draws two red blobs for "a red circle" is caught), and components are assigned to
tracks by nearest centroid. Colours present in fewer than ``min_presence`` of the frames are
ignored (transient speckles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations

import numpy as np

from .segment import Components


@dataclass
class Track:
    """One object over a clip; per-frame arrays [T] (NaN / -1 where absent)."""

    colour_index: int
    comps: Components = field(repr=False)
    comp: np.ndarray = field(repr=False)  # [T] component id or -1
    cx: np.ndarray = field(repr=False)
    cy: np.ndarray = field(repr=False)
    area: np.ndarray = field(repr=False)
    bbox: np.ndarray = field(repr=False)  # [T, 4] x0, y0, x1, y1 inclusive (NaN when absent)

    @property
    def present(self) -> np.ndarray:
        return self.comp >= 0


def build_tracks(
    comps: Components,
    colour_index: int,
    n_frames: int,
    min_area: float,
    min_presence: float = 0.5,
) -> list[Track]:
    keep = comps.area >= min_area
    per_frame: list[list[int]] = [[] for _ in range(n_frames)]
    for ci in np.nonzero(keep)[0].tolist():
        per_frame[int(comps.t[ci])].append(ci)
    counts = np.array([len(p) for p in per_frame])
    if np.mean(counts > 0) < min_presence:
        return []
    n_obj = max(1, round(float(np.median(counts[counts > 0]))))
    assign = np.full((n_obj, n_frames), -1, dtype=np.int64)
    last: list[tuple[float, float] | None] = [None] * n_obj
    for t in range(n_frames):
        cands = sorted(per_frame[t], key=lambda c: -comps.area[c])[: max(n_obj, 1)]
        if not cands:
            continue
        if n_obj == 1:
            assign[0, t] = cands[0]
            continue
        best, best_cost = None, np.inf
        slots = list(range(n_obj))
        for perm in permutations(slots, len(cands)):
            cost = 0.0
            for c, s in zip(cands, perm, strict=False):
                ref = last[s]
                if ref is not None:
                    cost += float(np.hypot(comps.cx[c] - ref[0], comps.cy[c] - ref[1]))
                else:
                    cost += 1e3 * s  # fresh slots fill in order
            if cost < best_cost:
                best, best_cost = perm, cost
        assert best is not None
        for c, s in zip(cands, best, strict=False):
            assign[s, t] = c
            last[s] = (float(comps.cx[c]), float(comps.cy[c]))
    tracks = []
    for k in range(n_obj):
        a = assign[k]
        ok = a >= 0
        if np.mean(ok) < min_presence:
            continue
        nan = np.full(n_frames, np.nan)
        cx, cy, area = nan.copy(), nan.copy(), nan.copy()
        bbox = np.full((n_frames, 4), np.nan)
        idx = a[ok]
        cx[ok], cy[ok], area[ok] = comps.cx[idx], comps.cy[idx], comps.area[idx]
        bbox[ok] = np.stack([comps.x0[idx], comps.y0[idx], comps.x1[idx], comps.y1[idx]], axis=1)
        tracks.append(Track(colour_index, comps, a, cx, cy, area, bbox))
    return tracks


def inside_frame(track: Track, width: int, height: int) -> np.ndarray:
    """Frames [T] bool where the track is present and does not touch the frame border."""
    b = track.bbox
    with np.errstate(invalid="ignore"):
        inside = (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < width - 1) & (b[:, 3] < height - 1)
    return track.present & inside


def clean_frames(tracks: list[Track], label: np.ndarray, margin: int = 2) -> list[np.ndarray]:
    """Per track, frames [T] bool where it is present, does not touch the frame border and no
    other object's pixels come within ``margin`` px of its pixels: safe for shape and size."""
    height, width = label.shape[1:3]
    return [
        inside_frame(tr, width, height) & ~touching_others(tracks, i, label, margin)
        for i, tr in enumerate(tracks)
    ]


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def touching_others(tracks: list[Track], i: int, label: np.ndarray, margin: int = 2) -> np.ndarray:
    """Frames [T] bool where another object's pixels are within ``margin`` px of track i's.

    Bounding boxes pre-filter; then the pixels decide (the bounding boxes of two stars can
    overlap while the stars are well apart). Same-colour tracks are judged by boxes alone.
    """
    b = tracks[i].bbox
    touch = np.zeros(b.shape[0], dtype=bool)
    for j, other in enumerate(tracks):
        if j == i:
            continue
        o = other.bbox
        both = tracks[i].present & other.present
        with np.errstate(invalid="ignore"):
            apart = (o[:, 0] - b[:, 2] > margin) | (b[:, 0] - o[:, 2] > margin)
            apart |= (o[:, 1] - b[:, 3] > margin) | (b[:, 1] - o[:, 3] > margin)
        for t in np.nonzero(both & ~apart)[0]:
            if other.colour_index == tracks[i].colour_index:
                touch[t] = True
                continue
            x0 = int(max(b[t, 0], o[t, 0])) - 2 * margin
            y0 = int(max(b[t, 1], o[t, 1])) - 2 * margin
            x1 = int(min(b[t, 2], o[t, 2])) + 2 * margin + 1
            y1 = int(min(b[t, 3], o[t, 3])) + 2 * margin + 1
            win = label[t, max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
            if win.size == 0:
                continue
            mine = _dilate(win == tracks[i].colour_index, margin)
            if (mine & (win == other.colour_index)).any():
                touch[t] = True
    return touch
