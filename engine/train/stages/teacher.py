"""Stage `teacher`: the bidirectional flow-matching teacher on VAE latents of training clips.

The teacher is the tiny preset's DiT run without a causal mask over clips of
`clip_latent_frames` latent frames. Text rows come from the preset's prompt encoder (for `tiny`
the grounded encoder with the run's own `text` head), encoded once per clip with the latent
dataset. Caption dropout replaces a
clip's text rows by zeros (the null condition, the same rows the model sees for "no prompt")
with probability `caption_dropout`, so the same network gives the unconditional flow that
classifier-free guidance needs. Timesteps follow the sampler's shifted distribution (see
`engine.train.flow`). An EMA of the weights is kept and exported as `teacher.safetensors`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.model.dit import CausalDiT
from engine.train.clips import ClipConfig
from engine.train.config import RunConfig
from engine.train.evaluate import eval_prompts, finish_stage, teacher_videos
from engine.train.flow import flow_matching_error, frame_mse, temporal_difference_loss
from engine.train.latents import LatentDataset, load_or_encode
from engine.train.models import init_file, load_dit, load_vae, run_text_encoder, stage_file, training_preset
from engine.train.run import StageRun, clipped_step, save_safetensors


@dataclass(frozen=True)
class TeacherStageConfig(RunConfig):
    lr: float = 4e-4
    max_steps: int = 20_000
    warmup_steps: int = 200
    weight_decay: float = 0.01
    batch_size: int = 8
    clip_latent_frames: int = 6
    dataset_clips: int = 3000
    caption_dropout: float = 0.1
    timestep_shift: float = 5.0
    ema_decay: float = 0.999
    two_object_prob: float = 0.3
    # share of the dataset's clips placed so that a translating object wraps inside them
    # (engine.train.clips, p_wrap)
    wrap_fraction: float = 0.0
    # share of steps that train on single latent frames (joint image-video training: shape,
    # colour and size are per-frame attributes, learned from 6x as many scenes per step)
    image_fraction: float = 0.0
    # share of video clips trained with a clean prefix of 1..F-1 latent frames (see clean_prefixes)
    clean_prefix_fraction: float = 0.0
    # weight of the temporal-difference term (engine.train.flow.temporal_difference_loss): the
    # frame-to-frame change of the flow error, against objects that pulse between latent frames
    temporal_weight: float = 0.0
    eval_prompts: int = 8
    eval_guidance: float = 4.0
    eval_motion_guidance: float = 0.0
    eval_guidance_rescale: float = 0.0
    eval_steps: int = 16


CONFIG = TeacherStageConfig


def clean_prefixes(batch: int, frames: int, fraction: float, rng: np.random.Generator) -> torch.Tensor | None:
    """[B] clean leading frames: 1..frames-1 for a `fraction` of the clips (uniform), else 0.

    With a clean past the noisy frames' content is pinned down by the context plus the prompt
    (where the object goes next), so the prompt's motion words change the loss a lot; with all
    frames at one noise level they hardly do (the noisy frames already show the motion, or show
    nothing) and a teacher learns to ignore them."""
    if fraction <= 0.0 or frames < 2:
        return None
    k = rng.integers(1, frames, batch)
    k[rng.random(batch) >= fraction] = 0
    return torch.from_numpy(k)


def image_or_video_batch(
    data: LatentDataset, cfg: TeacherStageConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch (x0 [B, F, C, h, w], text rows): with probability `image_fraction` an
    image batch -- one random latent frame of each of `batch_size * clip_latent_frames` clips,
    as 1-frame videos: the same tokens per step as a video batch, 6x as many scenes -- else
    `batch_size` whole clips."""
    if rng.random() < cfg.image_fraction:
        n = cfg.batch_size * cfg.clip_latent_frames
        index = torch.from_numpy(rng.integers(0, len(data), n))
        x0, emb, _ = data.batch(index)
        frame = torch.from_numpy(rng.integers(0, x0.shape[1], n))
        return x0[torch.arange(n), frame].unsqueeze(1), emb
    x0, emb, _ = data.batch(torch.from_numpy(rng.integers(0, len(data), cfg.batch_size)))
    return x0, emb


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)


def train(
    cfg: TeacherStageConfig, out_dir: Path, preset: str = "tiny", resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    gen_cfg = training_preset(preset)
    run = StageRun("teacher", out_dir, cfg, resume=resume, quiet=quiet)
    vae = load_vae(gen_cfg, stage_file(out_dir, "vae", "vae.safetensors"))
    text = run_text_encoder(gen_cfg, out_dir)
    frames = cfg.clip_latent_frames * gen_cfg.vae.temporal_stride
    clips = ClipConfig(
        gen_cfg.width, gen_cfg.height, gen_cfg.fps, frames, cfg.two_object_prob, p_wrap=cfg.wrap_fraction
    )
    data = load_or_encode(
        run.dir,
        vae,
        text,
        clips,
        cfg.dataset_clips,
        cfg.seed,
        note=run.note,
        quiet=run.quiet,
    )

    if cfg.init:  # continue from earlier weights (e.g. the shipped student: same parameters)
        teacher = load_dit(gen_cfg, init_file(cfg.init))
    else:
        teacher = CausalDiT(gen_cfg.dit)
        with torch.no_grad():  # the output layer starts at zero (as DiT's adaLN-Zero head): flow 0
            teacher.head.head.weight.zero_()
            teacher.head.head.bias.zero_()
    ema = copy.deepcopy(teacher).requires_grad_(False)
    opt = torch.optim.AdamW(teacher.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    run.restore({"teacher": teacher, "ema": ema}, {"opt": opt})
    teacher.train()
    while not run.done:
        x0, emb = image_or_video_batch(data, cfg, run.rng)
        drop = torch.from_numpy(run.rng.random(x0.shape[0]) < cfg.caption_dropout)
        emb[drop] = 0.0
        lr = run.lr()
        run.set_lr(opt, lr)
        prefix = clean_prefixes(x0.shape[0], x0.shape[1], cfg.clean_prefix_fraction, run.rng)
        with run.autocast():
            err, noisy = flow_matching_error(teacher, x0, emb, cfg.timestep_shift, prefix)
        loss = frame_mse(err, noisy)
        temporal = temporal_difference_loss(err, noisy)
        clipped_step(opt, loss + cfg.temporal_weight * temporal, teacher, cfg.grad_clip)
        ema_update(ema, teacher, min(cfg.ema_decay, (1.0 + run.step) / (10.0 + run.step)))
        run.record(loss=loss.item(), temporal=temporal.item(), lr=lr)
        run.maybe_save({"teacher": teacher, "ema": ema}, {"opt": opt})
    run.save({"teacher": teacher, "ema": ema}, {"opt": opt})
    save_safetensors(ema, run.dir / "teacher.safetensors")

    prompts = eval_prompts(cfg.eval_prompts, cfg.seed)
    videos = teacher_videos(
        ema.eval(),
        vae,
        text,
        prompts,
        cfg.clip_latent_frames,
        (gen_cfg.latent_height, gen_cfg.latent_width),
        guidance=cfg.eval_guidance,
        motion_guidance=cfg.eval_motion_guidance,
        guidance_rescale=cfg.eval_guidance_rescale,
        steps=cfg.eval_steps,
        shift=cfg.timestep_shift,
        seed=cfg.seed,
    )
    return finish_stage(run, videos, prompts, gen_cfg.fps)
