"""Training clips that show the world's wrap (`ClipConfig.p_wrap`), and the latent dataset's
record of the clip config it was drawn with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.data.layout import sample_tracks, state_at
from engine.data.vocab import COLOURS
from engine.data.world import BackgroundSpec, ObjectSpec, SceneSpec
from engine.text.base import CachedTextEncoder
from engine.text.hashed import HashTextEncoder
from engine.train.clips import ClipConfig, sample_clip, wrap_start
from engine.train.latents import load_or_encode
from engine.train.models import training_preset
from engine.vae.tiny import TinyVAE

BLACK = BackgroundSpec("black", "plain")


def _scene(motion: str) -> SceneSpec:
    return SceneSpec((ObjectSpec("red", "square", motion, "medium"),), BLACK)


@pytest.mark.parametrize("motion", ["left", "down", "up_right"])
def test_wrap_start_puts_a_wrap_inside_the_clip(motion: str) -> None:
    cfg = ClipConfig(frames=16)
    places = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        tracks = sample_tracks(_scene(motion).objects, rng, cfg.width, cfg.height, None)
        start = wrap_start(tracks, rng, cfg, default=-1.0)
        assert start >= 0.0
        state = state_at(tracks[0], start + np.arange(cfg.frames) / cfg.fps, cfg.width, cfg.height)
        jump = np.abs(np.diff(state.cx)) > cfg.width / 2
        if motion == "down":
            jump = np.abs(np.diff(state.cy)) > cfg.height / 2
        assert jump.sum() == 1, (seed, state.cx, state.cy)
        places.add(int(np.argmax(jump)))
    assert len(places) >= 5  # the wrap falls anywhere in the clip, not at one fixed frame


def test_wrap_start_keeps_the_default_without_a_translating_object() -> None:
    cfg = ClipConfig(frames=16)
    rng = np.random.default_rng(0)
    tracks = sample_tracks(_scene("bouncing").objects, rng, cfg.width, cfg.height, None)
    assert wrap_start(tracks, rng, cfg, default=3.5) == 3.5


def _touches_both_sides(frames: np.ndarray) -> bool:
    red = np.abs(frames.astype(int) - np.array(COLOURS["red"])).sum(-1) < 60  # [T, H, W]
    return bool(red[:, :, 0].any() and red[:, :, -1].any())


def test_wrap_clips_show_the_object_leave_and_come_back() -> None:
    """Rendered: with p_wrap = 1 most clips of a left mover show it at the left border and at the
    right one (a sliver can hide right at the wrap); at random stream times few do."""
    shares = []
    for p_wrap in (0.0, 1.0):
        cfg = ClipConfig(frames=16, p_stream_start=0.0, p_wrap=p_wrap)
        rng = np.random.default_rng(0)
        clips = [sample_clip(rng, cfg, lambda _: _scene("left")) for _ in range(40)]
        shares.append(np.mean([_touches_both_sides(c.frames) for c in clips]))
    assert shares[0] < 0.2 and shares[1] > 0.7, shares


def test_a_dataset_drawn_with_another_clip_config_is_encoded_again(tmp_path: Path) -> None:
    config = training_preset("test")
    vae = TinyVAE(config.vae).eval()
    text = CachedTextEncoder(HashTextEncoder(config.dit.text_len, config.dit.text_dim))
    frames = config.vae.temporal_stride * 2
    plain = ClipConfig(config.width, config.height, config.fps, frames)
    wraps = ClipConfig(config.width, config.height, config.fps, frames, p_wrap=1.0)
    notes: list[str] = []
    first = load_or_encode(tmp_path, vae, text, plain, 3, seed=0, note=notes.append, quiet=True)
    assert json.loads((tmp_path / "clips.json").read_text())["p_wrap"] == 0.0
    again = load_or_encode(tmp_path, vae, text, plain, 3, seed=0, note=notes.append, quiet=True)
    assert len(notes) == 1 and again.captions == first.captions  # the cache served the same config
    load_or_encode(tmp_path, vae, text, wraps, 3, seed=0, note=notes.append, quiet=True)
    assert len(notes) == 1  # another config: encoded, not served from the cache
    assert json.loads((tmp_path / "clips.json").read_text())["p_wrap"] == 1.0
    (tmp_path / "clips.json").unlink()  # a dataset from before the record serves a config without wraps
    load_or_encode(tmp_path, vae, text, plain, 3, seed=0, note=notes.append, quiet=True)
    assert len(notes) == 2
