"""Generation of one chunk with the KV cache: the few denoising passes plus the refresh pass.

This is the inner loop shared by sessions (`engine.session`), batched stepping
(`Generator.step_many`), cache rebuilding (prompt re-cache, snapshot resume) and the golden
verifier. Several streams can be advanced in one batched call: `caches[i]` holds stream i's
context and `start_frames[i]` its position; rows of `noise` follow the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from engine.kv_cache import KVCache
from engine.model.dit import CausalDiT, PromptKV
from engine.sampler import FlowMatchSchedule, NoiseFn

StepObserver = Callable[[int, torch.Tensor, torch.Tensor], None]  # (step, flow, x0)


@torch.no_grad()
def generate_chunk(
    dit: CausalDiT,
    schedule: FlowMatchSchedule,
    prompt: PromptKV,
    caches: Sequence[KVCache],
    start_frames: Sequence[int],
    noise: torch.Tensor,  # [B, F, C, H, W]
    renoise: NoiseFn,
    on_step: StepObserver | None = None,
    refresh: bool = True,
) -> torch.Tensor:
    """Denoise a chunk from `noise` and (by default) write its clean K/V; returns x0 [B, F, C, H, W]."""

    def flow_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return dit(x, t, prompt, start_frames=start_frames, caches=caches)

    step = 0

    def observed_flow(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal step
        flow = flow_fn(x, t)
        if on_step is not None:
            on_step(step, flow, schedule.to_x0(flow, x, t))
        step += 1
        return flow

    x0 = schedule.denoise(noise, observed_flow if on_step else flow_fn, renoise)
    if refresh:
        refresh_cache(dit, schedule, prompt, caches, start_frames, x0)
    return x0


@torch.no_grad()
def refresh_cache(
    dit: CausalDiT,
    schedule: FlowMatchSchedule,
    prompt: PromptKV,
    caches: Sequence[KVCache],
    start_frames: Sequence[int],
    latents: torch.Tensor,  # [B, F, C, H, W] clean latents of the chunk
) -> None:
    """One pass at the context-noise timestep: overwrites the chunk's cache slots with clean K/V."""
    t = schedule.context_timestep(latents.shape[0], latents.shape[1], latents.device)
    dit(latents, t, prompt, start_frames=start_frames, caches=caches)


def rebuild_cache(
    dit: CausalDiT,
    schedule: FlowMatchSchedule,
    prompt: PromptKV,
    cache: KVCache,
    context: Sequence[tuple[int, torch.Tensor]],
) -> None:
    """Refill `cache` from clean context chunks [(start_frame, latents [B, f, C, H, W])] in order.

    Used by the `recache` prompt transition (LongLive) and by compact snapshot resume. Each
    chunk is written at its original frame position and attends to the chunks before it, so
    in global mode (all chunks since frame 0 present) the result equals the original cache;
    in rolling mode evicted history no longer contributes.
    """
    cache.reset()
    tokens_per_frame = cache.tokens_per_frame
    for start, latents in context:
        cache.seek(start * tokens_per_frame)
        refresh_cache(dit, schedule, prompt, [cache], [start], latents)
