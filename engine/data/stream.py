"""Endless streams with live prompt switches, for drift evaluation.

A stream is a list of analytic tracks (see ``layout.py`` for the endless motion laws: wrap,
bounce, sawtooth growth) rendered at increasing frame indices. ``set_prompt`` switches the scene
at the current frame, in a defined way that mimics what a streaming model should do:

* an object present in both prompts (same colour and shape) *continues*: it keeps its position
  and size at the switch and eases over ``transition_s`` into its new motion and size (if its
  new motion needs room — growing, bouncing — it also eases into the interior);
* an object only in the old prompt fades out over ``transition_s``;
* an object only in the new prompt fades in over ``transition_s`` at a freshly sampled place
  (avoiding the objects already on screen);
* a changed background cross-fades over ``transition_s``; a prompt that does not mention the
  background keeps the current one.

Everything is a pure function of the seed and the sequence of (frame index, prompt) switches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from .captions import canonical_caption
from .layout import Track, sample_tracks, state_at
from .parse import parse_caption
from .render import RenderConfig, draw_tracks, render_background
from .shapes import EXTENTS
from .vocab import GROWTH_SPAN, SIZES
from .world import ObjectSpec, SceneSpec, complete_spec


class StreamRenderer:
    """Render an endless stream chunk by chunk: ``render(n)`` -> uint8 [n, H, W, 3]."""

    def __init__(
        self,
        prompt: str | SceneSpec,
        config: RenderConfig | None = None,
        seed: int = 0,
        transition_s: float = 0.5,
    ) -> None:
        self.config = config or RenderConfig()
        self.transition_s = transition_s
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5743]))
        self.frame_index = 0
        self.schedule: list[tuple[int, str]] = []
        self._tracks: list[Track] = []
        self._bg_old: np.ndarray | None = None
        self._bg_switch_t = -math.inf
        spec, caption = self._resolve(prompt, None)
        self.spec = spec
        cfg = self.config
        self._tracks = list(sample_tracks(spec.objects, self._rng, cfg.width, cfg.height, None))
        assert spec.background is not None
        self._bg = render_background(spec.background, cfg.width, cfg.height, self._rng)
        self.schedule.append((0, caption))

    def _resolve(self, prompt: str | SceneSpec, previous: SceneSpec | None) -> tuple[SceneSpec, str]:
        partial = parse_caption(prompt) if isinstance(prompt, str) else prompt
        spec = complete_spec(partial, self._rng, previous)
        return spec, prompt if isinstance(prompt, str) else canonical_caption(spec)

    @property
    def time(self) -> float:
        return self.frame_index / self.config.fps

    def _active(self, t: float) -> list[Track]:
        return [tr for tr in self._tracks if tr.t0 <= t < tr.t_end]

    def set_prompt(self, prompt: str | SceneSpec) -> SceneSpec:
        """Switch to a new prompt at the current frame; returns the completed spec."""
        cfg, ts, dt = self.config, self.time, self.transition_s
        spec, caption = self._resolve(prompt, self.spec)
        active = self._active(ts)
        remaining = list(active)
        kept: list[Track] = []
        new_objects = []
        for obj in spec.objects:
            old = next(
                (tr for tr in remaining if (tr.obj.colour, tr.obj.shape) == (obj.colour, obj.shape)), None
            )
            if old is None:
                new_objects.append(obj)
                continue
            remaining.remove(old)
            kept.append(self._continue(old, obj, ts))
            self._replace(old, replace(old, t_end=ts, fade_s=0.0))
        for tr in remaining:  # leaving objects fade out
            self._replace(tr, replace(tr, t_end=ts + dt, fade_s=dt))
        fresh = sample_tracks(tuple(new_objects), self._rng, cfg.width, cfg.height, None, avoid=tuple(kept))
        self._tracks.extend(kept)
        self._tracks.extend(replace(tr, t0=ts, fade_in_s=dt) for tr in fresh)
        assert spec.background is not None and self.spec.background is not None
        if spec.background != self.spec.background:
            self._bg_old = self._bg_at(ts)
            self._bg = render_background(spec.background, cfg.width, cfg.height, self._rng)
            self._bg_switch_t = ts
        self.spec = spec
        self.schedule.append((self.frame_index, caption))
        return spec

    def _replace(self, old: Track, new: Track) -> None:
        self._tracks[self._tracks.index(old)] = new

    def _continue(self, old: Track, obj: ObjectSpec, ts: float) -> Track:
        """A track for ``obj`` that starts where ``old`` is at ``ts`` and eases into its new law."""
        cfg = self.config
        st = state_at(old, np.array([ts]), cfg.width, cfg.height)
        x, y, r = float(st.cx[0]), float(st.cy[0]), float(st.radius[0])
        fresh = sample_tracks((obj,), self._rng, cfg.width, cfg.height, None)[0]
        nominal = SIZES[str(obj.size)] * min(cfg.width, cfg.height)
        span = math.log(GROWTH_SPAN)
        phase = 0.0
        if fresh.growth_rate != 0.0:
            phase = float(np.clip(math.log(r / nominal), -span / 2 + 1e-3, span / 2 - 1e-3))
        left, top, right, bottom = EXTENTS[str(obj.shape)]
        reach = nominal * (math.sqrt(GROWTH_SPAN) if fresh.growth_rate != 0.0 else 1.0)
        tx, ty = x, y
        if (fresh.vx == 0.0 and fresh.vy == 0.0) or obj.motion == "bouncing":
            # Needs to be fully inside (still/growing) or inside the bounce range: ease inwards.
            tx = float(np.clip(x, left * reach, cfg.width - right * reach))
            ty = float(np.clip(y, top * reach, cfg.height - bottom * reach))
        return replace(
            fresh, x0=tx, y0=ty, growth_phase=phase, t0=ts, ramp_from=(x, y, r), ramp_s=self.transition_s
        )

    def _bg_at(self, t: float | np.ndarray) -> np.ndarray:
        """Background(s) at time(s) t: [H, W, 3] or [T, H, W, 3] uint8."""
        if self._bg_old is None or self.transition_s <= 0:
            w = np.ones_like(np.asarray(t, dtype=np.float64))
        else:
            w = np.clip((np.asarray(t, dtype=np.float64) - self._bg_switch_t) / self.transition_s, 0.0, 1.0)
        if np.all(w >= 1.0):
            return self._bg if np.ndim(t) == 0 else np.broadcast_to(self._bg, (np.size(t), *self._bg.shape))
        assert self._bg_old is not None
        w4 = np.reshape(w, (-1, 1, 1, 1)).astype(np.float32)
        out = self._bg_old.astype(np.float32)[None] * (1 - w4) + self._bg.astype(np.float32)[None] * w4
        out = np.rint(out).astype(np.uint8)
        return out[0] if np.ndim(t) == 0 else out

    def render(self, n: int) -> np.ndarray:
        """The next ``n`` frames: uint8 [n, H, W, 3]."""
        times = (self.frame_index + np.arange(n)) / self.config.fps
        frames = np.array(self._bg_at(times), dtype=np.uint8, copy=True)
        t_lo, t_hi = float(times[0]), float(times[-1])
        tracks = tuple(tr for tr in self._tracks if tr.t0 <= t_hi and tr.t_end > t_lo)
        draw_tracks(frames, tracks, times)
        self.advance(n)
        return frames

    def advance(self, n: int) -> None:
        """Skip ``n`` frames without rendering them (motion is analytic: nothing is lost)."""
        self.frame_index += n
        t = self.time
        self._tracks = [tr for tr in self._tracks if tr.t_end > t - 1e-9]
        if self._bg_old is not None and t >= self._bg_switch_t + self.transition_s:
            self._bg_old = None

    def chunks(self, chunk: int = 16, total: int | None = None) -> Iterator[np.ndarray]:
        """Yield chunks of ``chunk`` frames, forever or until ``total`` frames."""
        done = 0
        while total is None or done < total:
            n = chunk if total is None else min(chunk, total - done)
            yield self.render(n)
            done += n
