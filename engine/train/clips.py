"""Training clips from the synthetic world, following the endless-stream motion laws.

The world's `SyntheticVideoDataset` renders *clips*: objects stay inside the frame for the clip.
A streaming model runs for minutes, though, and must know what happens next: translating objects
leave the frame and re-enter on the other side, bouncing ones reflect, growing ones follow a
sawtooth (see `engine.data.layout`). So training clips here are windows of endless streams:
a scene is sampled from the training split (never a held-out triple or template), its objects are
placed with the stream rules, and a window of `frames` frames is rendered starting at time 0 (the
start of a stream, objects fully inside) with probability `p_stream_start`, else at a random
time up to `max_offset_s` seconds into the stream. A `p_wrap` share of the clips is placed instead
so that a translating object wraps inside it -- out through one border, in through the opposite
one -- which a window at a random time shows in only ~7 % of the clips, and which a model that
never learned it answers by leaving the frame empty (docs/models.md, "Teaching the wrap").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.data.captions import make_caption
from engine.data.layout import Track, sample_tracks, state_at, wrapped
from engine.data.render import render_background, render_frames
from engine.data.vocab import DIRECTIONS
from engine.data.world import SceneSpec


@dataclass(frozen=True)
class ClipConfig:
    width: int = 128
    height: int = 128
    fps: float = 16.0
    frames: int = 36
    two_object_prob: float = 0.3
    p_stream_start: float = 0.3
    max_offset_s: float = 12.0
    p_wrap: float = 0.0  # share of clips that show a translating object wrap (0: none drawn)


@dataclass(frozen=True)
class TrainClip:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    caption: str
    spec: SceneSpec
    tracks: tuple[Track, ...]  # the objects' motion laws (engine.data.layout)
    start: float  # stream time of the first frame, seconds


SceneSampler = Callable[[np.random.Generator], SceneSpec]


def sample_clip(rng: np.random.Generator, cfg: ClipConfig, scene: SceneSampler | None = None) -> TrainClip:
    """One clip of the training split (see module docstring); a pure function of the rng state.

    scene: draws the scene instead of the training split (a slice of the world for a diagnosis,
    `bench/motion_slice.py`); the clip's motion, window and caption follow the same rules."""
    if scene is None:
        n = 2 if rng.random() < cfg.two_object_prob else 1
        spec = SceneSpec.sample(rng, "train", n_objects=n)
    else:
        spec = scene(rng)
    tracks = sample_tracks(spec.objects, rng, cfg.width, cfg.height, None)
    assert spec.background is not None
    background = render_background(spec.background, cfg.width, cfg.height, rng)
    start = 0.0 if rng.random() < cfg.p_stream_start else float(rng.uniform(0.0, cfg.max_offset_s))
    if cfg.p_wrap > 0 and rng.random() < cfg.p_wrap:
        start = wrap_start(tracks, rng, cfg, start)
    times = start + np.arange(cfg.frames) / cfg.fps
    frames = render_frames(background, tracks, times)
    return TrainClip(frames, make_caption(spec, rng, "train"), spec, tracks, start)


def wrap_start(tracks: tuple[Track, ...], rng: np.random.Generator, cfg: ClipConfig, default: float) -> float:
    """A clip start that puts one of a translating object's wraps (the frame at which it re-enters,
    within the first `2 * max_offset_s` seconds) at a uniform place inside the clip, past its first
    frame; `default` if no object translates."""
    movers = [t for t in tracks if str(t.obj.motion) in DIRECTIONS]
    if not movers:
        return default
    track = movers[int(rng.integers(len(movers)))]
    times = np.arange(int(2 * cfg.max_offset_s * cfg.fps)) / cfg.fps
    jump = wrapped(state_at(track, times, cfg.width, cfg.height), cfg.width, cfg.height)
    wraps = np.nonzero(jump)[0] + 1  # first frame after each wrap
    wraps = wraps[wraps >= cfg.frames - 1]  # the clip can start early enough to hold it anywhere
    if not len(wraps):
        return default
    at = int(wraps[int(rng.integers(len(wraps)))])
    return float(at - int(rng.integers(1, cfg.frames))) / cfg.fps


def first_wrap(clip: TrainClip, cfg: ClipConfig) -> int:
    """The clip's first frame after a translating object wrapped (it re-enters there through the
    border opposite the one it left by), or -1 if none wraps inside the clip."""
    times = clip.start + np.arange(cfg.frames) / cfg.fps
    firsts = [
        int(np.argmax(jump)) + 1
        for track in clip.tracks
        if str(track.obj.motion) in DIRECTIONS
        and (jump := wrapped(state_at(track, times, cfg.width, cfg.height), cfg.width, cfg.height)).any()
    ]
    return min(firsts, default=-1)


def clip_batch(rng: np.random.Generator, cfg: ClipConfig, batch: int) -> list[TrainClip]:
    return [sample_clip(rng, cfg) for _ in range(batch)]
