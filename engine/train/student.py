"""The causal student in its inference regime: KV-cached chunk rollouts for training, and
session-based sampling (the real `Generator` path) for evaluation.

Training rollouts use the preset's own cache (rolling window, sink, window RoPE positions) and
sampler (4 warped steps + a timestep-0 refresh pass per chunk), so the student trains in the
exact regime it streams in. Gradients reach only the passes asked for: every other pass runs
under `no_grad`; a grad-enabled cached pass writes detached K/V, so earlier chunks enter as
constants (see `engine.model.attention.SelfAttention._cached`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.config import GeneratorConfig
from engine.kv_cache import KVCache
from engine.model.dit import CausalDiT, PromptKV
from engine.sampler import FlowMatchSchedule
from engine.text.base import CachedTextEncoder
from engine.vae.tiny import TinyVAE


def make_cache(config: GeneratorConfig, batch: int, dtype: torch.dtype = torch.float32) -> KVCache:
    return KVCache(
        config.cache,
        num_layers=config.dit.num_layers,
        tokens_per_frame=config.tokens_per_frame,
        heads=config.dit.num_heads,
        head_dim=config.dit.head_dim,
        batch=batch,
        dtype=dtype,
        grid=config.grid,
    )


@dataclass
class Rollout:
    latents: torch.Tensor  # [B, F, C, h, w]; chunks in `grad_chunks` carry the graph
    exit_steps: list[int]  # denoising step at which each chunk stopped


def rollout(
    student: CausalDiT,
    schedule: FlowMatchSchedule,
    config: GeneratorConfig,
    prompt: PromptKV,
    chunks: int,
    *,
    exit_steps: Sequence[int] | None = None,
    grad_chunks: Sequence[int] = (),
    generator: torch.Generator | None = None,
    context: torch.Tensor | None = None,
) -> Rollout:
    """Self Forcing rollout: each chunk is denoised from noise with the cache, stops at its exit
    step (default: the last step, as at inference) whose x0 prediction is its output, then is
    refreshed into the cache at the context timestep. Only exit passes of `grad_chunks` keep a graph.

    `context` [B, k * frames_per_chunk, C, h, w]: clean latents (e.g. the world's own clip) that
    stand for the first k chunks: written into the cache by the same refresh pass and returned
    as they are; sampling starts at chunk k, continuing that past.
    """
    b = prompt.batch
    f = config.sampler.frames_per_chunk
    shape = (b, f, config.dit.in_dim, config.latent_height, config.latent_width)
    cache = make_cache(config, b)
    steps = schedule.num_steps
    exits = list(exit_steps) if exit_steps is not None else [steps - 1] * chunks
    given = 0 if context is None else context.shape[1] // f
    out = []
    for c in range(chunks):
        start = [c * f]
        if context is not None and c < given:
            x0 = context[:, c * f : (c + 1) * f]
        else:
            x0 = _denoise_chunk(
                student, schedule, prompt, shape, start, cache, exits[c], c in grad_chunks, generator
            )
        with torch.no_grad():
            student(
                x0.detach(),
                schedule.context_timestep(b, f, x0.device),
                prompt,
                start_frames=start,
                caches=[cache],
            )
        out.append(x0)
    return Rollout(torch.cat(out, dim=1), exits)


def _denoise_chunk(
    student: CausalDiT,
    schedule: FlowMatchSchedule,
    prompt: PromptKV,
    shape: tuple[int, ...],
    start: list[int],
    cache: KVCache,
    exit_step: int,
    grad: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One chunk from noise to the x0 prediction of its exit step; only that pass keeps a graph
    (when `grad`)."""
    b, f = shape[:2]
    x = torch.randn(shape, generator=generator)
    x0 = x
    for k in range(exit_step + 1):
        t = schedule.step_timesteps[k].expand(b, f)
        with torch.set_grad_enabled(grad and k == exit_step):
            flow = student(x, t, prompt, start_frames=start, caches=[cache])
            x0 = x - schedule.step_sigmas[k] * flow
        if k < exit_step:
            eps = torch.randn(shape, generator=generator)
            x = schedule.add_noise(x0.detach(), eps, schedule.step_sigmas[k + 1])
    return x0


@torch.no_grad()
def student_videos(
    config: GeneratorConfig,
    student: CausalDiT,
    vae: TinyVAE,
    text: CachedTextEncoder,
    prompts: Sequence[str],
    chunks: int,
    seed: int = 0,
) -> list[np.ndarray]:
    """Stream `chunks` chunks per prompt through real sessions; uint8 [T, H, W, 3] per prompt."""
    from engine.generator import Generator

    gen = Generator(config, copy.deepcopy(student), copy.deepcopy(vae), text)
    videos = []
    for i, prompt in enumerate(prompts):
        session = gen.open(prompt, seed=seed + i)
        videos.append(np.concatenate([session.step().frames for _ in range(chunks)]))
        session.close()
    return videos
