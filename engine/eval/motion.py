"""Motion class from a centroid track and an area track.

All quantities are in frame units (min(H, W)) and seconds, so thresholds do not depend on the
resolution or frame rate. The world's motions are well separated: translations move at
>= 0.12 units/s, bounces at >= 0.45 units/s with a reversal, growth changes the log-radius by
~0.17 per second, still objects do none of that. Estimates use lagged differences and medians,
and drop jumps (an object wrapping around the frame, a sawtooth growth snapping back), so they are
robust to the endless-stream motion laws and to a few bad frames.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

# Sector centres in image coordinates (y down): angle of the velocity vector.
_SECTORS = {
    "right": 0.0,
    "down_right": 45.0,
    "down": 90.0,
    "down_left": 135.0,
    "left": 180.0,
    "up_left": -135.0,
    "up": -90.0,
    "up_right": -45.0,
}


@dataclass(frozen=True)
class MotionConfig:
    # lag of the finite difference for velocity: a quarter second, so that motion advancing in
    # steps (a decoder that holds a position for 4 frames, then jumps) is read by where it goes;
    # the stutter itself is a quality defect, flagged by the frozen-frame alarm (quality.py)
    velocity_lag_s: float = 0.25
    growth_lag_s: float = 0.5  # lag for the log-radius slope
    move_speed: float = 0.07  # units/s: faster -> translation
    # units/s per axis: a signed run above this counts for bounces. A bounce reflects on the axis
    # carrying >= BOUNCE_SPEED[0] * cos(60 deg) = 0.225; a few px of back and forth between latent
    # frames (a generator's wobble of up to ~4 px per quarter second) stays below 0.15: not a bounce
    reversal_speed: float = 0.15
    reversal_min_s: float = 0.125  # each side of a reversal must last this long
    growth_rate: float = 0.06  # |d log r / dt| above this -> growing / shrinking
    max_speed: float = 1.5  # units/s: faster centroid steps are wraps / glitches, dropped
    growth_jump: float = 0.25  # log-radius per lag: larger is a sawtooth snap


@dataclass(frozen=True)
class MotionEstimate:
    motion: str
    velocity: tuple[float, float]  # median, units/s (x right, y down)
    speed: float
    growth_rate: float  # d log(radius) / dt, 1/s
    reversal: bool


def _lag(seconds: float, fps: float) -> int:
    return max(1, round(seconds * fps))


def _velocities(
    pos: np.ndarray, ok: np.ndarray, lag: int, fps: float, jump: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lagged velocities [N, 2] and their frame indices [N] over pairs both valid, jumps dropped."""
    t = np.arange(pos.shape[0] - lag)
    good = ok[t] & ok[t + lag]
    t = t[good]
    d = pos[t + lag] - pos[t]
    small = np.hypot(d[:, 0], d[:, 1]) <= jump
    return d[small] * (fps / lag), t[small]


def _has_reversal(v: np.ndarray, threshold: float, min_run: int) -> bool:
    """True if the signed series has two adjacent runs of opposite sign, each >= min_run long."""
    sign = np.where(v > threshold, 1, np.where(v < -threshold, -1, 0))
    runs: list[list[int]] = []
    for s in sign.tolist():
        if s == 0:
            continue
        if runs and runs[-1][0] == s:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
    return any(a[1] >= min_run and b[1] >= min_run for a, b in itertools.pairwise(runs))


def direction_of(vx: float, vy: float) -> str:
    ang = math.degrees(math.atan2(vy, vx))
    return min(_SECTORS, key=lambda k: abs((ang - _SECTORS[k] + 180.0) % 360.0 - 180.0))


def _growth_rate(radius: np.ndarray, ok: np.ndarray, fps: float, cfg: MotionConfig) -> float:
    """Median d log r / dt over pairs of usable frames 0.5..1 x growth_lag_s apart; pairs that
    jump (a sawtooth snap, a glitch) are dropped. Pairs rather than consecutive runs, so frames
    lost to occlusion in between do not matter."""
    glag = _lag(cfg.growth_lag_s, fps)
    idx = np.nonzero(ok)[0]
    if idx.size < 2:
        return 0.0
    logr = np.log(radius[idx])
    i, j = np.triu_indices(idx.size, k=1)
    lag = idx[j] - idx[i]
    sel = (lag >= max(1, glag // 2)) & (lag <= glag)
    dl = logr[j[sel]] - logr[i[sel]]
    rate = dl * fps / lag[sel]
    rate = rate[np.abs(dl) <= cfg.growth_jump]
    return float(np.median(rate)) if rate.size else 0.0


def classify_motion(
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    motion_ok: np.ndarray,
    size_ok: np.ndarray,
    fps: float,
    unit: float,
    config: MotionConfig | None = None,
) -> MotionEstimate:
    """``cx, cy, radius`` [T] in pixels (NaN where absent); ``motion_ok`` frames whose centroid
    can be trusted (not occluded), ``size_ok`` frames whose radius can be trusted (fully visible,
    not touching anything)."""
    cfg = config or MotionConfig()
    pos = np.stack([cx, cy], axis=1) / unit
    lag = _lag(cfg.velocity_lag_s, fps)
    min_run = max(1, _lag(cfg.reversal_min_s, fps))
    v, _ = _velocities(pos, motion_ok, lag, fps, cfg.max_speed * lag / fps)
    reversal = len(v) > 0 and (
        _has_reversal(v[:, 0], cfg.reversal_speed, min_run)
        or _has_reversal(v[:, 1], cfg.reversal_speed, min_run)
    )
    vel = (float(np.median(v[:, 0])), float(np.median(v[:, 1]))) if len(v) else (0.0, 0.0)
    speed = math.hypot(*vel)
    growth = _growth_rate(radius, size_ok, fps, cfg)
    if reversal:
        motion = "bouncing"
    elif speed >= cfg.move_speed:
        motion = direction_of(*vel)
    elif growth >= cfg.growth_rate:
        motion = "growing"
    elif growth <= -cfg.growth_rate:
        motion = "shrinking"
    else:
        motion = "still"
    return MotionEstimate(motion, vel, speed, growth, bool(reversal))
