"""Stage `ode`: ODE initialisation of the causal student from teacher trajectories.

1. Trajectories. For captions of the teacher's latent dataset, integrate the teacher's guided
   flow ODE (Euler, `teacher_steps` steps on the grid warped by the sampler's shift, CFG scale
   `guidance`, plus `motion_guidance` away from the prompt with its motion reversed, rescaled by
   `guidance_rescale`; see `engine.train.flow.Guidance`) from noise to x0 and keep the states at
   the student's warped timesteps (they lie on the grid when `teacher_steps` is a multiple of
   4). With `causal_trajectories`, chunk c > 0 is integrated again given the clean x0 of chunks
   < c as a prefix (`euler_sample(prefix=...)`, for a teacher trained with clean prefixes): the
   teacher then answers the question the student faces at inference -- what comes next after
   this clean past -- where a joint sample of all frames decides where the objects go from the
   noise as much as from the prompt. Stored in shards under ode/trajectories/, so a resumed run
   keeps what it generated. At most `trajectory_minutes` are spent here.
2. Regression. The student starts as a copy of the teacher and learns to map each chunk's
   trajectory state at a random one of its steps to the teacher's x0 for that chunk (MSE on x0),
   chunk after chunk through the preset's KV cache: the context of chunk c is the teacher's clean
   x0 of chunks < c written by a timestep-0 refresh pass, exactly as at inference (where the
   context is clean too), rather than the noisy context of a block-causal full-sequence pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.model.dit import CausalDiT
from engine.sampler import FlowMatchSchedule
from engine.train.config import RunConfig
from engine.train.evaluate import eval_prompts, finish_stage
from engine.train.flow import Guidance, euler_sample
from engine.train.latents import LatentDataset
from engine.train.models import init_file, load_dit, load_vae, run_text_encoder, stage_file, training_preset
from engine.train.run import StageRun, save_safetensors, train_autocast
from engine.train.student import make_cache, student_videos


@dataclass(frozen=True)
class ODEStageConfig(RunConfig):
    lr: float = 1e-4
    max_steps: int = 6000
    warmup_steps: int = 50
    weight_decay: float = 0.0
    batch_size: int = 4
    trajectories: int = 400
    trajectory_minutes: float = 20.0
    trajectory_batch: int = 8
    teacher_steps: int = 12
    guidance: float = 4.0
    motion_guidance: float = 0.0
    guidance_rescale: float = 0.0
    causal_trajectories: bool = False
    eval_prompts: int = 8
    eval_chunks: int = 4


CONFIG = ODEStageConfig


@dataclass
class Trajectories:
    states: torch.Tensor  # [N, S, F, C, h, w] fp16: state at each student step
    x0: torch.Tensor  # [N, F, C, h, w] fp16
    text: torch.Tensor  # [N, Lt, Dt] fp16

    def __len__(self) -> int:
        return self.x0.shape[0]


def _load_shards(directory: Path) -> list[dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    return [load_file(str(p)) for p in sorted(directory.glob("shard_*.safetensors"))]


@torch.no_grad()
def teacher_trajectory(
    teacher: CausalDiT,
    noise: torch.Tensor,  # [B, F, C, h, w]
    guidance: Guidance,
    *,
    steps: int,
    shift: float,
    sigmas: list[float],
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 [B, F, C, h, w], states [B, S, F, C, h, w] at `sigmas`) of the teacher's guided ODE.

    chunk=None: all frames integrated together (one chunk). chunk=f: chunk by chunk, each from
    the same noise with the chunks before it as a clean prefix (a causal teacher rollout)."""
    chunk = chunk or noise.shape[1]
    done: list[torch.Tensor] = []
    states: list[torch.Tensor] = []
    for start in range(0, noise.shape[1], chunk):
        prefix = torch.cat(done, dim=1) if done else None
        x0, kept = euler_sample(
            teacher, noise, guidance, steps=steps, shift=shift, keep_sigmas=tuple(sigmas), prefix=prefix
        )
        part = slice(start, start + chunk)
        done.append(x0[:, part])
        states.append(torch.stack([kept[s][:, part] for s in sigmas], dim=1))
    return torch.cat(done, dim=1), torch.cat(states, dim=2)


@torch.no_grad()
def generate_trajectories(
    run: StageRun,
    cfg: ODEStageConfig,
    teacher: CausalDiT,
    data: LatentDataset,
    sigmas: list[float],
    shift: float,
    chunk: int,
) -> Trajectories:
    """Teacher trajectories on the Euler grid warped by `shift` (the sampler's: the student's
    `sigmas` lie on it); `chunk` frames per chunk for `causal_trajectories`."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    directory = run.dir / "trajectories"
    directory.mkdir(exist_ok=True)
    shards = _load_shards(directory)
    have = sum(s["x0"].shape[0] for s in shards)
    budget_s = cfg.trajectory_minutes * 60.0
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + have)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed))
    with tqdm(
        total=cfg.trajectories, initial=have, desc="trajectories", disable=run.quiet, dynamic_ncols=True
    ) as bar:
        while have < cfg.trajectories and run.elapsed < budget_s:
            n = min(cfg.trajectory_batch, cfg.trajectories - have)
            index = order[torch.arange(have, have + n) % len(data)]
            x_data, text, _ = data.batch(index)
            guidance = Guidance.of(teacher, text, cfg.guidance, cfg.motion_guidance, cfg.guidance_rescale)
            noise = torch.randn(x_data.shape, generator=gen)
            with run.autocast():
                x0, states = teacher_trajectory(
                    teacher,
                    noise,
                    guidance,
                    steps=cfg.teacher_steps,
                    shift=shift,
                    sigmas=sigmas,
                    chunk=chunk if cfg.causal_trajectories else None,
                )
            save_file(
                {
                    "states": states.half().contiguous(),
                    "x0": x0.half().contiguous(),
                    "text": text.half().contiguous(),
                },
                str(directory / f"shard_{len(shards):05d}.safetensors"),
            )
            shards.append({"x0": x0})
            have += n
            bar.update(n)
    full = _load_shards(directory)
    return Trajectories(*(torch.cat([s[k] for s in full]) for k in ("states", "x0", "text")))


def ode_loss(
    student: CausalDiT,
    schedule: FlowMatchSchedule,
    gen_cfg: Any,
    states: torch.Tensor,
    x0: torch.Tensor,
    text: torch.Tensor,
    rng: Any,
    mixed_precision: bool = False,
) -> torch.Tensor:
    """Chunk-by-chunk x0 regression with a clean-context KV cache; backpropagates per chunk and
    returns the mean loss (detached). states [B, S, F, C, h, w], x0 [B, F, C, h, w].
    `mixed_precision`: student passes under bf16 autocast (the loss stays fp32)."""
    b, steps, frames = states.shape[:3]
    f = gen_cfg.sampler.frames_per_chunk
    cache = make_cache(gen_cfg, b)
    prompt = student.encode_prompt(text)
    total = 0.0
    chunks = frames // f
    for c in range(chunks):
        sl = slice(c * f, (c + 1) * f)
        k = torch.from_numpy(rng.integers(0, steps, b))
        x_t = states[torch.arange(b), k, sl]  # [B, f, C, h, w]
        t = schedule.step_timesteps[k].unsqueeze(1).expand(b, f)
        sigma = schedule.step_sigmas[k].view(b, 1, 1, 1, 1)
        with train_autocast(mixed_precision):
            flow = student(x_t, t, prompt, start_frames=[c * f], caches=[cache]).float()
        loss = F.mse_loss(x_t - sigma * flow, x0[:, sl])
        # the prompt's cross-attention K/V are shared by all chunks: keep its graph until the last
        loss.div(chunks).backward(retain_graph=c + 1 < chunks)
        total += loss.item() / chunks
        with torch.no_grad(), train_autocast(mixed_precision):
            t0 = schedule.context_timestep(b, f, x0.device)
            student(x0[:, sl], t0, prompt, start_frames=[c * f], caches=[cache])
    return torch.tensor(total)


def train(
    cfg: ODEStageConfig, out_dir: Path, preset: str = "tiny", resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    gen_cfg = training_preset(preset)
    run = StageRun("ode", out_dir, cfg, resume=resume, quiet=quiet)
    vae = load_vae(gen_cfg, stage_file(out_dir, "vae", "vae.safetensors"))
    teacher = (
        load_dit(gen_cfg, stage_file(out_dir, "teacher", "teacher.safetensors")).eval().requires_grad_(False)
    )
    data = LatentDataset.load(Path(out_dir) / "teacher")
    if data is None:
        raise FileNotFoundError(
            f"{out_dir}/teacher/latents.safetensors not found: run `rollcast train teacher` first"
        )
    schedule = FlowMatchSchedule(gen_cfg.sampler)
    sigmas = [float(s) for s in schedule.step_sigmas]
    start = init_file(cfg.init) if cfg.init else stage_file(out_dir, "teacher", "teacher.safetensors")
    student = load_dit(gen_cfg, start)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    resumed = run.restore({"student": student}, {"opt": opt})
    traj = generate_trajectories(
        run, cfg, teacher, data, sigmas, gen_cfg.sampler.shift, gen_cfg.sampler.frames_per_chunk
    )
    run.note(f"[ode] {len(traj)} teacher trajectories ({run.elapsed / 60:.1f} min)")
    if resumed is None:
        run.save({"student": student}, {"opt": opt})  # the clock now includes the trajectories
    student.train()
    while not run.done:
        index = torch.from_numpy(run.rng.integers(0, len(traj), cfg.batch_size))
        lr = run.lr()
        run.set_lr(opt, lr)
        opt.zero_grad(set_to_none=True)
        loss = ode_loss(
            student,
            schedule,
            gen_cfg,
            traj.states[index].float(),
            traj.x0[index].float(),
            traj.text[index].float(),
            run.rng,
            cfg.mixed_precision,
        )
        if torch.isfinite(torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)):
            opt.step()
        run.record(loss=loss.item(), lr=lr)
        run.maybe_save({"student": student}, {"opt": opt})
    run.save({"student": student}, {"opt": opt})
    save_safetensors(student, run.dir / "student.safetensors")

    text = run_text_encoder(gen_cfg, out_dir)
    prompts = eval_prompts(cfg.eval_prompts, cfg.seed)
    videos = student_videos(gen_cfg, student, vae, text, prompts, cfg.eval_chunks, seed=cfg.seed)
    return finish_stage(run, videos, prompts, gen_cfg.fps, trajectories=len(traj))
