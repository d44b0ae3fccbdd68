"""Stage `self-forcing`: Self Forcing with DMD on the ODE-initialised causal student.

Each iteration:
1. The student rolls out `n` chunks (n uniform in [min_chunks, max_chunks]) for a batch of
   training captions through the preset's own KV cache (for `tiny` a rolling 6-frame window:
   the previous chunk and the current one), so rollouts longer than the cache evict chunks
   during training exactly as a long stream does (and a sink, where the preset has one, is seen
   at growing distances from the window). Context chunks are denoised with all steps (their clean K/V
   written by the timestep-0 refresh, as at inference); each of the last `window_chunks` chunks
   stops at a random denoising step whose x0 prediction is its output, and only that pass keeps
   a graph (gradients through the last denoising step only; all other passes under no_grad).
2. DMD loss on that window (`engine.train.dmd`): real score = frozen teacher with CFG (its own
   scales, `context_guidance` and `context_motion_guidance`, on windows with a clean past), fake
   score = online critic; one generator update. In a `dmd_context_fraction` share of the iterations
   the window's first chunk is denoised fully (as at inference) and scored as clean context:
   only the last chunk is noised and moved, so the scores compare what the student draws next
   after its own past with what the teacher would draw there. A `dmd_world_context_fraction`
   share of those iterations takes the past from the world instead: the first chunk of the
   caption's own training clip (the teacher's latent dataset) enters the cache clean and the
   student samples the one chunk after it, so the scores compare continuations of an object
   that moves as the prompt says (`rollout(context=...)`); a `dmd_world_wrap_fraction` share of
   those draws its clips among the ones where an object wraps in the student's chunk, so the
   scores compare what comes after an object leaves the frame. A `dmd_opening_fraction` share of
   the other iterations scores the stream's opening: the first chunks, after the student's own
   finished first latent frame, given to both scores clean (the kinds of window:
   `engine.train.windows`). On the world's windows a `world_regression` weight adds
   `world_regression_loss`: the student's chunk is pulled to the world's own next chunk. DMD
   seeks the real score's most likely answer (after an exit: an empty frame, docs/models.md);
   the world's motion laws are deterministic given a clean past, so the regression's target is
   the one right answer, an entry at the opposite border included -- but it is mean-seeking, and
   for an object the student cannot place it asks for the background (0 in the shipped config:
   docs/models.md, "A regression onto the world's next chunk"). An `adversarial` weight adds
   DMD2's GAN on the same windows (`engine.train.adversarial`): a head on the fake score's features
   tells the world's next chunk from the student's after the same past, and the student's
   chunk moves along the head's gradient -- towards what the world draws after that past, an
   entry anywhere the head cannot tell from the world's, not the mean of them.
3. `fake_updates` flow-matching updates of the fake score on recent student windows (a small
   replay buffer of detached windows, so the critic sees more than one batch per rollout), the
   same share of them with the first chunk as clean context (windows whose past is the world's
   or an opening frame always keep that past clean: the critic models the student's frames
   given it). With `adversarial` > 0, one more update per iteration trains the head (and, at
   `adversarial_critic`, the fake score's backbone) on a batch of recent world windows: the
   world's chunk against the student's after the same past.
The EMA of the student is exported as `student.safetensors` -- or, with `average_from` < 1, the
uniform mean of the student's weights over the part of the run after that share of its budget
(stochastic weight averaging; the EMA is then kept as `ema.safetensors`). The weights the stage
started from are kept beside them as `start.safetensors` (`rollcast train export --blend`
interpolates between the start and the student).
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.sampler import FlowMatchSchedule
from engine.train.adversarial import (
    AdversarialSettings,
    DiscriminatorHead,
    adversarial_direction,
    discriminator_loss,
)
from engine.train.config import RunConfig
from engine.train.dmd import DMDSettings, direction_loss, dmd_loss
from engine.train.evaluate import eval_prompts, finish_stage
from engine.train.flow import flow_matching_loss
from engine.train.latents import LatentDataset
from engine.train.models import init_file, load_dit, load_vae, run_text_encoder, stage_file, training_preset
from engine.train.run import StageRun, clipped_step, save_safetensors
from engine.train.stages.teacher import ema_update
from engine.train.student import rollout, student_videos
from engine.train.windows import WindowMix, plan_window


@dataclass(frozen=True)
class SelfForcingStageConfig(RunConfig):
    lr: float = 2e-5  # generator
    lr_fake: float = 1e-4
    max_steps: int = 1000
    warmup_steps: int = 10
    lr_min_ratio: float = 0.5
    batch_size: int = 2
    min_chunks: int = 2
    max_chunks: int = 7
    window_chunks: int = 2
    guidance: float = 4.0
    motion_guidance: float = 0.0  # real score's push towards the prompted motion (see flow.Guidance)
    guidance_rescale: float = 0.0  # real score's guidance rescale (see flow.Guidance)
    context_guidance: float = 4.0  # the real score's CFG on windows scored after a clean past
    context_motion_guidance: float = 0.0  # and its motion guidance there (see dmd.DMDSettings)
    wrap_guidance: float = -1.0  # the real score's CFG on the wrap windows; < 0: context_guidance
    wrap_motion_guidance: float = -1.0  # and its motion guidance there; < 0: context_motion_guidance
    dmd_context_fraction: float = 0.0  # iterations whose window starts with a clean context chunk
    dmd_world_context_fraction: float = 0.0  # of those, the ones whose context is the world's clip
    dmd_world_wrap_fraction: float = 0.0  # of those, the ones whose clips wrap in the student's chunk
    dmd_opening_fraction: float = 0.0  # of the others, the ones scoring the stream's opening
    world_regression: float = 0.0  # weight of world_regression_loss on the world's windows; 0: off
    adversarial: float = 0.0  # weight of the GAN direction on the world's windows, against DMD's; 0: off
    adversarial_critic: float = 0.1  # weight of the discriminator loss in the fake score's updates
    lr_head: float = 1e-3  # the discriminator head's learning rate (the fake score's: lr_fake)
    adversarial_max_u: float = 0.5  # the GAN's noise levels: u in [dmd_min_u, this], then the shift
    timestep_shift: float = 5.0
    dmd_min_u: float = 0.02
    dmd_max_u: float = 0.98
    fake_updates: int = 3
    fake_batch: int = 4
    replay: int = 16
    ema_decay: float = 0.95
    average_from: float = 1.0  # share of the run after which the student's weights are averaged; 1: off
    eval_prompts: int = 8
    eval_chunks: int = 4


CONFIG = SelfForcingStageConfig


def world_regression_loss(
    x: torch.Tensor,  # [B, F, C, h, w] the student's window (with graph): the world's past, its chunk
    clip: torch.Tensor,  # [B, F, C, h, w] the world's clip over the same frames
    context_frames: int,
) -> tuple[torch.Tensor, float]:
    """0.5 * mean ||x - clip||^2 over the window, normalised as the DMD surrogate is (per
    element of the whole window; the past is the clip's own, so only the sampled chunk adds), and
    mean |x - clip| over the sampled chunk (logged as `world_gap`)."""
    gap = (x - clip)[:, context_frames:].detach().abs().mean().item()
    return 0.5 * F.mse_loss(x, clip), gap


def train(
    cfg: SelfForcingStageConfig,
    out_dir: Path,
    preset: str = "tiny",
    resume: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    gen_cfg = training_preset(preset)
    if cfg.window_chunks > cfg.min_chunks:
        raise ValueError("window_chunks must be <= min_chunks")
    run = StageRun("self-forcing", out_dir, cfg, resume=resume, quiet=quiet)
    vae = load_vae(gen_cfg, stage_file(out_dir, "vae", "vae.safetensors"))
    teacher_file = stage_file(out_dir, "teacher", "teacher.safetensors")
    real = load_dit(gen_cfg, teacher_file).eval().requires_grad_(False)
    fake = load_dit(gen_cfg, teacher_file)
    start = init_file(cfg.init) if cfg.init else stage_file(out_dir, "ode", "student.safetensors")
    student = load_dit(gen_cfg, start)
    if not resume:
        save_safetensors(student, run.dir / "start.safetensors")
    ema = copy.deepcopy(student).requires_grad_(False)
    average = copy.deepcopy(student).requires_grad_(False) if cfg.average_from < 1.0 else None
    data = LatentDataset.load(Path(out_dir) / "teacher")
    if data is None:
        raise FileNotFoundError(
            f"{out_dir}/teacher/latents.safetensors not found: run `rollcast train teacher` first"
        )
    schedule = FlowMatchSchedule(gen_cfg.sampler)
    settings = DMDSettings(
        guidance=cfg.guidance,
        motion_guidance=cfg.motion_guidance,
        guidance_rescale=cfg.guidance_rescale,
        context_guidance=cfg.context_guidance,
        context_motion_guidance=cfg.context_motion_guidance,
        wrap_guidance=cfg.wrap_guidance,
        wrap_motion_guidance=cfg.wrap_motion_guidance,
        shift=cfg.timestep_shift,
        min_u=cfg.dmd_min_u,
        max_u=cfg.dmd_max_u,
    )
    opt_g = torch.optim.AdamW(
        student.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay
    )
    models: dict[str, torch.nn.Module] = {"student": student, "ema": ema, "fake": fake}
    head = DiscriminatorHead(gen_cfg.dit.dim) if cfg.adversarial > 0 else None
    if head is not None:
        models["head"] = head
    critic = torch.nn.ModuleList([fake] if head is None else [fake, head])
    groups: list[dict[str, Any]] = [{"params": fake.parameters()}]
    if head is not None:  # a fresh head learns faster than the pretrained backbone it reads
        groups.append({"params": head.parameters(), "lr_scale": cfg.lr_head / cfg.lr_fake})
    opt_f = torch.optim.AdamW(groups, lr=cfg.lr_fake, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    gan_levels = AdversarialSettings(cfg.timestep_shift, cfg.dmd_min_u, cfg.adversarial_max_u)
    if average is not None:
        models["average"] = average
    optims = {"gen": opt_g, "fake": opt_f}
    averaged = int((run.restore(models, optims) or {}).get("averaged", 0))  # students in `average`
    replay: deque[tuple[torch.Tensor, torch.Tensor, int | None]] = deque(maxlen=cfg.replay)
    # the world windows' (world's window, student's window, text), for the discriminator head
    pairs: deque[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = deque(maxlen=cfg.replay)
    steps = schedule.num_steps
    frames_per_chunk = gen_cfg.sampler.frames_per_chunk
    window = cfg.window_chunks * frames_per_chunk
    context_frames = window - frames_per_chunk  # a context window: all but its last chunk clean
    mix = WindowMix(
        window_chunks=cfg.window_chunks,
        min_chunks=cfg.min_chunks,
        max_chunks=cfg.max_chunks,
        context_fraction=cfg.dmd_context_fraction,
        world_fraction=cfg.dmd_world_context_fraction,
        wrap_fraction=cfg.dmd_world_wrap_fraction,
        opening_fraction=cfg.dmd_opening_fraction,
    )
    stride = gen_cfg.vae.temporal_stride  # video frames per latent frame
    wrapping = data.wrapping_in(context_frames * stride, window * stride) if mix.wrap_fraction > 0 else None
    if wrapping is not None and not len(wrapping):
        raise ValueError(
            "no clip of the latent dataset wraps in the student's chunk: "
            "encode it with the teacher's wrap_fraction > 0"
        )
    student.train()
    fake.train()
    while not run.done:
        index = torch.from_numpy(run.rng.integers(0, len(data), cfg.batch_size))
        plan = plan_window(mix, run.rng, steps, frames_per_chunk)
        if plan.wrap and wrapping is not None:
            index = wrapping[torch.from_numpy(run.rng.integers(0, len(wrapping), cfg.batch_size))]
        text = data.text[index].float()
        clip = data.latents[index][:, :window].float() if plan.world else None  # the world's window
        lr = run.lr()
        run.set_lr(opt_g, lr)
        run.set_lr(opt_f, lr * cfg.lr_fake / cfg.lr)

        # generator update
        with run.autocast():
            prompt = student.encode_prompt(text)
            roll = rollout(
                student,
                schedule,
                gen_cfg,
                prompt,
                plan.chunks,
                exit_steps=plan.exit_steps,
                grad_chunks=plan.grad_chunks,
                context=clip[:, :context_frames] if clip is not None else None,
            )
            x = roll.latents[:, -window:].float()
            loss_g, stats = dmd_loss(x, text, real, fake, settings, plan.clean_frames, plan.wrap)
            if clip is not None:
                loss_w, stats["world_gap"] = world_regression_loss(x, clip, context_frames)
                if cfg.world_regression > 0:
                    loss_g = loss_g + cfg.world_regression * loss_w
                if head is not None:
                    push, gan = adversarial_direction(fake, head, x, text, context_frames, gan_levels)
                    loss_g = loss_g + cfg.adversarial * direction_loss(x, push)
                    stats.update(gan)
        clipped_step(opt_g, loss_g, student, cfg.grad_clip)
        ema_update(ema, student, min(cfg.ema_decay, (1.0 + run.step) / (10.0 + run.step)))
        if average is not None and run.progress >= cfg.average_from:
            averaged += 1
            ema_update(average, student, 1.0 - 1.0 / averaged)  # running mean: weight 1/n

        if head is not None:  # the head on recent world windows: the world's chunk against the student's
            if clip is not None:
                pairs.extend(zip(clip, x.detach(), text, strict=True))
            if pairs:
                drawn_at = run.rng.integers(0, len(pairs), min(cfg.fake_batch, len(pairs)))
                recent = [pairs[int(i)] for i in drawn_at]
                worlds, students, words = (torch.stack([p[k] for p in recent]) for k in range(3))
                with run.autocast():
                    loss_d, d_stats = discriminator_loss(
                        fake, head, worlds, students, words, context_frames, gan_levels
                    )
                clipped_step(opt_f, cfg.adversarial_critic * loss_d, critic, cfg.grad_clip)
                stats.update(loss_d=loss_d.item(), **d_stats)

        # critic updates on recent student samples
        for b in range(x.shape[0]):
            replay.append((x[b].detach(), text[b], plan.fixed_past))
        fake_losses = []
        for _ in range(cfg.fake_updates):
            pick = run.rng.integers(0, len(replay), min(cfg.fake_batch, len(replay)))
            xs = torch.stack([replay[int(i)][0] for i in pick])
            ts = torch.stack([replay[int(i)][1] for i in pick])
            # windows with a fixed past keep it; the others get a context chunk in the share of
            # the generator's windows that have one
            fixed_pasts = [replay[int(i)][2] for i in pick]
            drawn = run.rng.random(len(pick)) < cfg.dmd_context_fraction
            prefix = torch.tensor(
                [context_frames * int(d) if f is None else f for f, d in zip(fixed_pasts, drawn, strict=True)]
            )
            with run.autocast():
                loss_f = flow_matching_loss(fake, xs, ts, cfg.timestep_shift, prefix)
            clipped_step(opt_f, loss_f, fake, cfg.grad_clip)
            fake_losses.append(loss_f.item())
        run.record(
            loss=loss_g.item(),
            loss_fake=sum(fake_losses) / len(fake_losses),
            chunks=plan.chunks,
            context=int(plan.context),
            world=int(plan.world),
            wrap=int(plan.wrap),
            opening=int(plan.opening),
            lr=lr,
            **stats,
        )
        run.maybe_save(models, optims, {"averaged": averaged})
    run.save(models, optims, {"averaged": averaged})
    final = ema
    if average is not None and averaged:
        save_safetensors(ema, run.dir / "ema.safetensors")
        final = average
    else:  # no EMA beside the student that an earlier, averaged run left in this directory
        (run.dir / "ema.safetensors").unlink(missing_ok=True)
    save_safetensors(final, run.dir / "student.safetensors")

    text_encoder = run_text_encoder(gen_cfg, out_dir)
    prompts = eval_prompts(cfg.eval_prompts, cfg.seed)
    videos = student_videos(gen_cfg, final, vae, text_encoder, prompts, cfg.eval_chunks, seed=cfg.seed)
    return finish_stage(run, videos, prompts, gen_cfg.fps)
