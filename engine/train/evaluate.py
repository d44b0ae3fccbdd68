"""Quick prompt-fidelity checks during training: sample videos for held-out prompts, decode them,
score them with the analytic evaluator (`engine.eval`) and save a PNG grid to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.data.eval_prompts import heldout_eval_prompts
from engine.data.tensors import from_model_output
from engine.model.dit import CausalDiT
from engine.text.base import CachedTextEncoder
from engine.train.flow import Guidance, euler_sample
from engine.train.images import save_grid
from engine.train.run import StageRun
from engine.vae.tiny import TinyVAE


def eval_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` held-out prompts, alternating unseen triples and unseen templates (deterministic)."""
    prompts = heldout_eval_prompts(seed=seed)
    triples = [p.text for p in prompts if p.kind == "triple"]
    templates = [p.text for p in prompts if p.kind == "template"]
    rng = np.random.default_rng(seed)
    triples = [triples[i] for i in rng.permutation(len(triples))]
    templates = [templates[i] for i in rng.permutation(len(templates))]
    out: list[str] = []
    while len(out) < n and (triples or templates):
        for pool in (triples, templates):
            if pool and len(out) < n:
                out.append(pool.pop(0))
    return out


def score_videos(videos: Sequence[np.ndarray], prompts: Sequence[str], fps: float) -> dict[str, Any]:
    from engine.eval import evaluate_videos

    res = evaluate_videos(list(zip(videos, prompts, strict=True)), fps=fps)
    return {
        "overall": res["overall"],
        "accuracy": res["accuracy"],
        "all_correct": res["all_correct"],
        "n": res["n"],
    }


@torch.no_grad()
def teacher_videos(
    teacher: CausalDiT,
    vae: TinyVAE,
    text: CachedTextEncoder,
    prompts: Sequence[str],
    frames: int,
    latent_hw: tuple[int, int],
    *,
    guidance: float,
    motion_guidance: float = 0.0,
    guidance_rescale: float = 0.0,
    steps: int,
    shift: float,
    seed: int = 0,
    batch: int = 4,
) -> list[np.ndarray]:
    """Bidirectional teacher samples (Euler, CFG, optional motion guidance and guidance rescale)
    decoded to uint8 [T, H, W, 3] videos."""
    g = torch.Generator().manual_seed(seed)
    out: list[np.ndarray] = []
    c = teacher.cfg.in_dim
    for i in range(0, len(prompts), batch):
        group = list(prompts[i : i + batch])
        emb = text.encode(group)
        noise = torch.randn(len(group), frames, c, *latent_hw, generator=g)
        guide = Guidance.of(teacher, emb, guidance, motion_guidance, guidance_rescale)
        x0, _ = euler_sample(teacher, noise, guide, steps=steps, shift=shift)
        pixels = vae.decode(x0.transpose(1, 2))  # [B, 3, T, H, W]
        out += [from_model_output(p) for p in pixels]
    return out


@torch.no_grad()
def roundtrip_fidelity(
    vae: TinyVAE, n: int, fps: float, seed: int = 0, seconds: float = 2.0
) -> dict[str, Any]:
    """The VAE's ceiling: held-out prompts' own video (rendered by the world with its stream
    rules) encoded and decoded, then scored like generated video."""
    from engine.data.eval_prompts import heldout_eval_prompts
    from engine.data.render import RenderConfig, make_scene, render_scene
    from engine.data.tensors import to_model_input

    frames = vae.config.pixel_frames(max(1, round(seconds * fps / vae.config.frames_per_latent)))
    rng = np.random.default_rng(seed)
    prompts = heldout_eval_prompts(seed=seed)
    picked = [prompts[int(i)] for i in rng.permutation(len(prompts))[:n]]
    videos = []
    for p in picked:
        render = RenderConfig(num_frames=frames, fps=fps)
        clip = render_scene(make_scene(p.spec, rng, render, clip=False), render)
        videos.append(from_model_output(vae.decode(vae.encode_latent(to_model_input(clip)[None]))[0]))
    return score_videos(videos, [p.text for p in picked], fps)


def save_samples(videos: Sequence[np.ndarray], path: Path, every: int = 3) -> None:
    save_grid(list(videos), path, every=every)


def finish_stage(
    run: StageRun, videos: Sequence[np.ndarray], prompts: Sequence[str], fps: float, **extra: Any
) -> dict[str, Any]:
    """End of a model stage: sample grid PNG, held-out fidelity, closing note and the summary
    that `rollcast train` prints."""
    scores = None
    if videos:  # `eval_prompts = 0` skips the check
        save_samples(videos, run.dir / "samples.png")
        scores = score_videos(videos, prompts, fps)
    run.close()
    fidelity = "not checked" if scores is None else scores["overall"]
    run.note(
        f"[{run.stage}] done: {run.step} steps in {run.elapsed / 60:.1f} min; held-out fidelity {fidelity}"
    )
    return {
        "stage": run.stage,
        "steps": run.step,
        "minutes": run.elapsed / 60,
        **extra,
        "eval": scores,
        "last": run.log.read()[-1:],
    }
