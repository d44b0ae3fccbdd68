"""The shipped `tiny` weights: small, load strictly, and generate what the prompt asks for.

Runs in CI on the CPU: a few held-out prompts (unseen attribute combinations and unseen
phrasings), 4 chunks (48 frames, 3 s) each, scored by the analytic evaluator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.data.parse import parse_caption
from engine.generator import WEIGHTS_DIR, Generator
from engine.loader import read_checkpoint
from engine.model.dit import CausalDiT
from engine.presets import get_preset
from engine.text.grounded import GroundingHead
from engine.train.evaluate import eval_prompts, score_videos
from engine.vae.tiny import TinyVAE

TINY_DIR = WEIGHTS_DIR / "tiny"
# The shipped weights (docs/models.md, "The shipped run") score 78 % mean per-attribute accuracy
# on these 6 prompts, with colour and shape right every time (2026-12-02, AVX512 CPU); seeded
# random weights score 0 %. The margins allow a few attributes to flip on another CPU's
# arithmetic. They say "trained and following the prompt", not the 90 % held-out goal.
MIN_FIDELITY = 0.65  # mean per-attribute accuracy (count, colour, shape, size, motion)
MIN_COLOUR = 0.8
MIN_SHAPE = 0.6


def test_weights_are_shipped_and_small() -> None:
    files = sorted(p.name for p in TINY_DIR.glob("*.safetensors"))
    # teacher.safetensors: not served; the next release's teacher stage continues from it
    assert files == ["dit.safetensors", "teacher.safetensors", "text.safetensors", "vae.safetensors"]
    assert sum(p.stat().st_size for p in TINY_DIR.iterdir()) <= 30 * 2**20


def test_weights_load_strictly() -> None:
    cfg = get_preset("tiny")
    dit = CausalDiT(cfg.dit)
    state = read_checkpoint(TINY_DIR / "dit.safetensors")
    assert set(state) == set(dit.state_dict())
    dit.load_state_dict(state, strict=True)
    CausalDiT(cfg.dit).load_state_dict(read_checkpoint(TINY_DIR / "teacher.safetensors"), strict=True)
    vae = TinyVAE(cfg.vae)  # type: ignore[arg-type]
    vae_state = read_checkpoint(TINY_DIR / "vae.safetensors")
    vae.load_state_dict(vae_state, strict=True)
    assert not torch.equal(vae.latent_std, torch.ones_like(vae.latent_std))  # measured statistics
    head = GroundingHead()
    head_state = read_checkpoint(TINY_DIR / "text.safetensors")
    assert set(head_state) == set(head.state_dict())
    head.load_state_dict(head_state, strict=True)


def test_prompt_encoder_reads_a_held_out_paraphrase(tiny: Generator) -> None:
    """The shipped grounding head reads the attributes of a phrasing and triple it never saw."""
    for prompt in eval_prompts(4, seed=3):
        read = tiny.text.encoder.read([prompt])[0]  # type: ignore[attr-defined]
        obj = parse_caption(prompt).objects[0]
        assert (read["obj0.colour"], read["obj0.shape"], read["obj0.motion"]) == (
            obj.colour,
            obj.shape,
            obj.motion,
        ), (prompt, read)


@pytest.fixture(scope="module")
def tiny() -> Generator:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield Generator.from_preset("tiny")
    torch.set_num_threads(threads)


def test_generated_frames_follow_held_out_prompts(tiny: Generator) -> None:
    prompts = eval_prompts(6, seed=1)
    videos = []
    for i, prompt in enumerate(prompts):
        session = tiny.open(prompt, seed=100 + i)
        chunks = [session.step() for _ in range(4)]
        assert all(c.frames.shape == (12, 128, 128, 3) for c in chunks)
        videos.append(torch.cat([torch.from_numpy(c.frames) for c in chunks]).numpy())
    scores = score_videos(videos, prompts, tiny.config.fps)
    assert scores["n"] == len(prompts)
    assert scores["overall"] >= MIN_FIDELITY, scores
    assert scores["accuracy"]["colour"] >= MIN_COLOUR, scores
    assert scores["accuracy"]["shape"] >= MIN_SHAPE, scores


def test_weights_dir_is_the_generator_default() -> None:
    assert Path(TINY_DIR).is_dir()
