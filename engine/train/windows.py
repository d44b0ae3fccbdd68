"""What one Self Forcing iteration rolls out and scores: its DMD window.

The student rolls out `chunks` chunks; the last `window_chunks` of them form the window the two
scores see. A window is one of four kinds:

- *free*: every frame of the window is noised and scored (the joint distribution of the last
  `window_chunks` chunks); each of them exits at a random denoising step.
- *context*: the window's first chunk is the student's own past, denoised fully as at inference
  and given to both scores clean; only the last chunk is noised, scored and exits early.
- *world*: a context window whose past is the world's -- the caption's own training clip's first
  chunk enters the cache clean and the student samples the one chunk after it. A *wrap* window
  is a world window whose clips are drawn among those where a translating object wraps in the
  chunk the student samples: the past shows it leave, and the scores compare what the student
  and the teacher draw after that -- a moment a random clip holds in ~12 % of the world windows
  (a dataset drawn with the teacher's wrap_fraction 0.3).
- *opening*: the stream's start. The student rolls out the first `window_chunks` chunks; the
  first chunk is denoised fully and its first latent frame is given to both scores clean, so
  the rest of the window is scored as the teacher's continuation of the student's own opening
  frame. Without a past, a joint sample of the teacher carries almost no direction, while its
  continuation of one clean latent frame moves the way the prompt says (docs/models.md, "Why the
  motion is missing"); the stream's first chunk sets the speed the rest of it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowMix:
    window_chunks: int = 2
    min_chunks: int = 2
    max_chunks: int = 7
    context_fraction: float = 0.0  # share of iterations with a context window
    world_fraction: float = 0.0  # of those, the share whose past is the world's
    wrap_fraction: float = 0.0  # of those, the share whose clips wrap in the student's chunk
    opening_fraction: float = 0.0  # of the others, the share that score the stream's opening


@dataclass(frozen=True)
class WindowPlan:
    chunks: int  # chunks rolled out
    exit_steps: tuple[int, ...]  # denoising step at which each chunk stops
    grad_chunks: range  # chunks whose exit pass keeps a graph
    clean_frames: int  # leading latent frames of the window given clean to both scores
    context: bool  # a context window (its first chunk is a past: the student's or the world's)
    world: bool  # the window's first chunk is the world's clip
    wrap: bool  # ... of a clip whose object wraps in the chunk the student samples
    opening: bool  # the window is the stream's first chunks, scored after their first frame

    @property
    def fixed_past(self) -> int | None:
        """Clean frames the fake score must keep when it trains on this window (the world's chunk
        or the opening frame: it models the student's frames given them); None where the past is
        the student's own and the fake score draws its context like any other window."""
        return self.clean_frames if self.world or self.opening else None


def plan_window(mix: WindowMix, rng: np.random.Generator, steps: int, frames_per_chunk: int) -> WindowPlan:
    """Draw one iteration's window (a fraction of 0 draws nothing from `rng`, so a mix without
    a kind replays the same iterations as before that kind existed)."""
    n = int(rng.integers(mix.min_chunks, mix.max_chunks + 1))
    context = rng.random() < mix.context_fraction
    world = mix.world_fraction > 0 and context and rng.random() < mix.world_fraction
    wrap = mix.wrap_fraction > 0 and world and rng.random() < mix.wrap_fraction
    opening = mix.opening_fraction > 0 and not context and rng.random() < mix.opening_fraction
    if world or opening:
        n = mix.window_chunks  # the stream's first chunks (for world: the world's, then the student's)
    scored = 1 if context else mix.window_chunks
    exits = [steps - 1] * (n - scored) + [int(e) for e in rng.integers(0, steps, scored)]
    if opening:
        exits[0] = steps - 1  # the opening frame the scores condition on is a finished one
    clean = (mix.window_chunks - 1) * frames_per_chunk if context else (1 if opening else 0)
    return WindowPlan(n, tuple(exits), range(n - scored, n), clean, context, world, wrap, opening)
