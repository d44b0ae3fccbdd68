"""Where and how objects move: analytic trajectories, evaluated at any time.

A :class:`Track` is one object's concrete placement in pixels plus its motion law; its state at
time t (seconds) is a closed-form function, so a 2 s training clip and frame 9000 of a 10-minute
stream come from the same code, and any frame can be rendered without simulating the past.

Motion laws (documented behaviour for endless streams):

* translations (left, right, up, down, diagonals): constant velocity; the object leaves the
  frame completely and re-enters from the opposite side (wrap on a torus padded by the object's
  extent, so it is never drawn twice and is invisible only for ~2 px of travel per wrap);
* bouncing: constant speed, mirror reflection when the bounding box touches a border;
* growing / shrinking: the log-radius is a sawtooth of rate ``vocab.GROWTH_RATE`` spanning a
  factor ``vocab.GROWTH_SPAN`` centred on the nominal size: after reaching nominal*sqrt(2) a
  growing object snaps back to nominal/sqrt(2) (every 4 s) — it is always growing, never
  unbounded;
* still: nothing changes.

For training clips the sampler places objects so that none of the special cases occurs: moving
objects stay fully inside the frame, growing clips are centred on the nominal size (no snap),
bouncing clips contain a reflection in their middle half, and two objects never overlap.

A track can also ease in from a previous state (``ramp_from``): used by prompt switches so that an
object kept across prompts continues from where it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .shapes import EXTENTS, bounding_radius
from .vocab import (
    BOUNCE_SPEED,
    COLOURS,
    DIRECTIONS,
    GROWTH_RATE,
    GROWTH_SPAN,
    LINEAR_SPEED,
    SIZES,
)
from .world import ObjectSpec

EDGE_MARGIN = 2.0  # px between a clip's objects and the frame border


@dataclass(frozen=True)
class Track:
    """One object's placement and motion law in pixel units (y down)."""

    obj: ObjectSpec
    x0: float  # centroid at t0
    y0: float
    vx: float  # px / s
    vy: float
    radius: float  # nominal equal-area radius, px
    growth_rate: float  # d log(radius) / dt
    growth_phase: float  # log(radius / nominal) at t0
    t0: float = 0.0
    t_end: float = math.inf  # fades out over fade_s before t_end
    fade_in_s: float = 0.0
    fade_s: float = 0.0
    ramp_from: tuple[float, float, float] | None = None  # (x, y, radius) eased from at t0
    ramp_s: float = 0.0

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLOURS[str(self.obj.colour)]


@dataclass(frozen=True)
class TrackState:
    """Arrays over the requested times, each [T]."""

    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    alpha: np.ndarray


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = max(hi - lo, 1e-6)
    u = np.mod(x - lo, 2.0 * span)
    return lo + span - np.abs(u - span)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def state_at(track: Track, times: np.ndarray, width: int, height: int) -> TrackState:
    """Evaluate a track at ``times`` (seconds, [T]) for a ``width`` x ``height`` frame."""
    tau = np.asarray(times, dtype=np.float64) - track.t0
    motion = track.obj.motion
    shape = str(track.obj.shape)
    if track.growth_rate != 0.0:
        span = math.log(GROWTH_SPAN)
        u = track.growth_phase + track.growth_rate * tau
        u = np.mod(u + span / 2.0, span) - span / 2.0
    else:
        u = np.full_like(tau, track.growth_phase)
    radius = track.radius * np.exp(u)
    x = track.x0 + track.vx * tau
    y = track.y0 + track.vy * tau
    left, top, right, bottom = EXTENTS[shape]
    if motion == "bouncing":
        x = _reflect(x, left * track.radius, width - right * track.radius)
        y = _reflect(y, top * track.radius, height - bottom * track.radius)
    elif track.vx != 0.0 or track.vy != 0.0:
        lo_x, lo_y, span_x, span_y = wrap_domain(
            shape, track.radius, width, height, track.vx != 0 and track.vy != 0
        )
        x = np.mod(x - lo_x, span_x) + lo_x
        y = np.mod(y - lo_y, span_y) + lo_y
    if track.ramp_from is not None and track.ramp_s > 0:
        w = _smoothstep(tau / track.ramp_s)
        fx, fy, fr = track.ramp_from
        x = fx + (x - fx) * w
        y = fy + (y - fy) * w
        radius = np.exp(math.log(fr) + (np.log(radius) - math.log(fr)) * w)
    alpha = np.where(tau >= 0, 1.0, 0.0)
    if track.fade_in_s > 0:
        alpha = alpha * np.clip(tau / track.fade_in_s, 0.0, 1.0)
    if math.isfinite(track.t_end):
        left_t = track.t_end - np.asarray(times, dtype=np.float64)
        alpha = alpha * (np.clip(left_t / track.fade_s, 0.0, 1.0) if track.fade_s > 0 else (left_t > 0))
    return TrackState(x, y, radius, alpha.astype(np.float64))


def wrapped(state: TrackState, width: int, height: int) -> np.ndarray:
    """[T-1] bool: between times t and t+1 the object wrapped (its centre jumped across the
    frame, out through one border and in through the opposite one)."""
    return (np.abs(np.diff(state.cx)) > width / 2) | (np.abs(np.diff(state.cy)) > height / 2)


def wrap_domain(
    shape: str, radius: float, width: int, height: int, diagonal: bool
) -> tuple[float, float, float, float]:
    """(lo_x, lo_y, span_x, span_y) of the torus a translating centroid wraps on.

    From "fully out on one side" to "fully out on the other side" (+1 px each), so the object is
    never drawn twice and is invisible for only ~2 px of travel per wrap. Diagonal movers use the
    same span on both axes (and start in phase, see ``sample_track``) so they leave through a
    corner and re-enter through the opposite one: x and y wrap together, and the object is fully
    visible for one contiguous stretch of every period.
    """
    left, top, right, bottom = EXTENTS[shape]
    span_x = width + (left + right) * radius + 2.0
    span_y = height + (top + bottom) * radius + 2.0
    if diagonal:
        span_x = span_y = max(span_x, span_y)
    return -right * radius - 1.0, -bottom * radius - 1.0, span_x, span_y


def _phase_interval(lo: float, span: float, vis_lo: float, vis_hi: float, v: float) -> tuple[float, float]:
    """Range of wrap progress p in [0, 1) that puts the centroid in [vis_lo, vis_hi]."""
    if v > 0:
        return (vis_lo - lo) / span, (vis_hi - lo) / span
    return (lo + span - vis_hi) / span, (lo + span - vis_lo) / span


def _motion_velocity(motion: str, rng: np.random.Generator, unit: float) -> tuple[float, float]:
    if motion in DIRECTIONS:
        dx, dy = DIRECTIONS[motion]
        speed = rng.uniform(*LINEAR_SPEED) * unit
        return dx * speed, dy * speed
    if motion == "bouncing":
        speed = rng.uniform(*BOUNCE_SPEED) * unit
        ang = math.radians(rng.uniform(30.0, 60.0)) + (math.pi / 2) * rng.integers(4)
        return speed * math.cos(ang), speed * math.sin(ang)
    return 0.0, 0.0


def _growth(motion: str) -> float:
    return GROWTH_RATE if motion == "growing" else -GROWTH_RATE if motion == "shrinking" else 0.0


def sample_track(
    obj: ObjectSpec,
    rng: np.random.Generator,
    width: int,
    height: int,
    duration: float | None,
    t0: float = 0.0,
) -> Track:
    """Draw a placement for ``obj``. With ``duration`` (a clip) the object stays fully inside the
    frame for [t0, t0 + duration]; with ``None`` (a stream) only the start is constrained."""
    unit = float(min(width, height))
    motion = str(obj.motion)
    radius = SIZES[str(obj.size)] * unit
    vx, vy = _motion_velocity(motion, rng, unit)
    rate = _growth(motion)
    d = duration if duration is not None else 0.0
    phase = -rate * d / 2.0  # clip midpoint at nominal size
    # The largest radius the object reaches decides how far from the borders it must be.
    r_max = radius * (math.sqrt(GROWTH_SPAN) if rate != 0.0 else 1.0)
    left, top, right, bottom = EXTENTS[str(obj.shape)]
    if motion == "bouncing":
        lo_x, hi_x = left * radius, width - right * radius
        lo_y, hi_y = top * radius, height - bottom * radius
        return Track(obj, rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y), vx, vy, radius, rate, phase, t0)
    # Start so that start and end (start + v * d) are both inside the frame (with a margin, so
    # that the object never touches the border in a clip).
    m = EDGE_MARGIN
    lo_x = left * r_max + m + max(0.0, -vx * d)
    hi_x = width - right * r_max - m - max(0.0, vx * d)
    lo_y = top * r_max + m + max(0.0, -vy * d)
    hi_y = height - bottom * r_max - m - max(0.0, vy * d)
    x0 = rng.uniform(lo_x, hi_x) if hi_x > lo_x else (lo_x + hi_x) / 2
    y0 = rng.uniform(lo_y, hi_y) if hi_y > lo_y else (lo_y + hi_y) / 2
    if duration is None and vx != 0.0 and vy != 0.0:
        # Stream diagonal: start x and y at the same wrap progress so that they wrap together.
        wx, wy, sx, sy = wrap_domain(str(obj.shape), radius, width, height, True)
        px = _phase_interval(wx, sx, lo_x, hi_x, vx)
        py = _phase_interval(wy, sy, lo_y, hi_y, vy)
        p_lo, p_hi = max(px[0], py[0]), min(px[1], py[1])
        if p_hi > p_lo:
            p = rng.uniform(p_lo, p_hi)
            x0 = wx + p * sx if vx > 0 else wx + sx - p * sx
            y0 = wy + p * sy if vy > 0 else wy + sy - p * sy
    return Track(obj, x0, y0, vx, vy, radius, rate, phase, t0)


def _bounce_ok(track: Track, times: np.ndarray, width: int, height: int) -> bool:
    """A bouncing clip must reverse direction somewhere in its middle half."""
    st = state_at(track, times, width, height)
    n = len(times)
    for p in (st.cx, st.cy):
        v = np.diff(p)
        flips = np.nonzero(np.sign(v[1:]) * np.sign(v[:-1]) < 0)[0] + 1
        if np.any((flips >= n // 4) & (flips <= (3 * n) // 4)):
            return True
    return False


def _overlap_frames(a: Track, b: Track, times: np.ndarray, width: int, height: int) -> int:
    """Frames in which the objects may come closer than 3 px: both their bounding boxes and their
    bounding circles do (either one being apart proves the shapes are apart)."""
    sa, sb = state_at(a, times, width, height), state_at(b, times, width, height)
    la, ta, ra, ba = (e * sa.radius for e in EXTENTS[str(a.obj.shape)])
    lb, tb, rb, bb = (e * sb.radius for e in EXTENTS[str(b.obj.shape)])
    gap_x = np.maximum((sb.cx - lb) - (sa.cx + ra), (sa.cx - la) - (sb.cx + rb))
    gap_y = np.maximum((sb.cy - tb) - (sa.cy + ba), (sa.cy - ta) - (sb.cy + bb))
    gap_c = np.hypot(sa.cx - sb.cx, sa.cy - sb.cy) - (
        bounding_radius(str(a.obj.shape)) * sa.radius + bounding_radius(str(b.obj.shape)) * sb.radius
    )
    return int(np.sum((gap_x < 3.0) & (gap_y < 3.0) & (gap_c < 3.0)))


def sample_tracks(
    objects: tuple[ObjectSpec, ...],
    rng: np.random.Generator,
    width: int,
    height: int,
    times: np.ndarray | None,
    attempts: int = 40,
    per_object: int = 12,
    avoid: tuple[Track, ...] = (),
) -> tuple[Track, ...]:
    """Place all objects. With ``times`` (a clip) enforce the clip rules above. Objects are
    placed one after the other, each trying ``per_object`` placements against those already
    placed; the whole layout is retried ``attempts`` times and the one with the fewest
    overlapping frames wins if none is perfect (rare: two large objects moving across each
    other). ``avoid`` are tracks already on screen (prompt switches) that new objects should not
    overlap at their start."""
    duration = None if times is None else float(times[-1] - times[0])
    t0 = 0.0 if times is None else float(times[0])
    check = times if times is not None else np.array([t0])
    best: tuple[Track, ...] = ()
    best_bad = math.inf
    for _ in range(attempts):
        tracks: list[Track] = []
        bad_total = 0
        for obj in objects:
            choice, choice_bad = None, math.inf
            for _ in range(per_object):
                for _ in range(20):
                    tr = sample_track(obj, rng, width, height, duration, t0)
                    if times is None or obj.motion != "bouncing" or _bounce_ok(tr, times, width, height):
                        break
                bad = sum(_overlap_frames(o, tr, check, width, height) for o in (*avoid, *tracks))
                if bad < choice_bad:
                    choice, choice_bad = tr, bad
                if bad == 0:
                    break
            assert choice is not None
            tracks.append(choice)
            bad_total += int(choice_bad)
        if bad_total < best_bad:
            best, best_bad = tuple(tracks), bad_total
        if bad_total == 0:
            break
    return best
