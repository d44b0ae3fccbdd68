"""Training clips that show the world's wrap (`ClipConfig.p_wrap`), and the latent dataset's
record of the clip config it was drawn with and of where its clips wrap."""

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
from engine.train.clips import ClipConfig, first_wrap, sample_clip, wrap_start
from engine.train.latents import LatentDataset, load_or_encode
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
    red = _red(frames)  # [T, H, W]
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


def _red(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - np.array(COLOURS["red"])).sum(-1) < 60  # [H, W]


def test_first_wrap_is_the_frame_the_object_comes_back_through_the_opposite_border() -> None:
    """Rendered: a left mover's first wrap frame is where its centre jumps across the frame while
    it is hidden (the ~2 px between leaving and coming back): before it the object is only ever at
    the left, within a few frames after it, it shows at the right border; a clip without a
    translating object has none."""
    cfg = ClipConfig(frames=16, p_stream_start=0.0, p_wrap=1.0)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(20):
        clip = sample_clip(rng, cfg, lambda _: _scene("left"))
        at = first_wrap(clip, cfg)
        assert 1 <= at < cfg.frames
        if at + 4 <= cfg.frames:
            checked += 1
            assert _red(clip.frames[at : at + 4])[:, :, -4:].any()
            assert not _red(clip.frames[:at])[:, :, cfg.width // 2 :].any()
    assert checked >= 10
    assert first_wrap(sample_clip(rng, cfg, lambda _: _scene("bouncing")), cfg) == -1


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
    wrapping = load_or_encode(tmp_path, vae, text, wraps, 3, seed=0, note=notes.append, quiet=True)
    assert len(notes) == 1  # another config: encoded, not served from the cache
    assert json.loads((tmp_path / "clips.json").read_text())["p_wrap"] == 1.0
    # where each clip wraps is recorded with it (the clips drawn again from the same seed)
    rng = np.random.default_rng(np.random.SeedSequence([0, 0x1A7E]))
    expected = [first_wrap(sample_clip(rng, wraps), wraps) for _ in range(3)]
    stored = LatentDataset.load(tmp_path)
    assert stored is not None and stored.wraps is not None and wrapping.wraps is not None
    assert stored.wraps.tolist() == wrapping.wraps.tolist() == expected
    inside = [i for i, w in enumerate(expected) if 2 <= w < 6]
    assert stored.wrapping_in(2, 6).tolist() == inside
    # a dataset drawn with wraps before they were recorded is encoded again
    LatentDataset(stored.latents, stored.text, stored.captions).save(tmp_path)
    load_or_encode(tmp_path, vae, text, wraps, 3, seed=0, note=notes.append, quiet=True)
    assert len(notes) == 1 and LatentDataset.load(tmp_path).wraps is not None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="records no wraps"):
        LatentDataset(stored.latents, stored.text, stored.captions).wrapping_in(2, 6)
    (tmp_path / "clips.json").unlink()  # a dataset from before the record serves a config without wraps
    load_or_encode(tmp_path, vae, text, plain, 3, seed=0, note=notes.append, quiet=True)
    assert len(notes) == 2
