"""Flow matching in the sampler's parameterisation: x_t = (1 - s) x0 + s eps, flow v = eps - x0,
t = 1000 s, so that `FlowMatchSchedule.to_x0` (x0 = x_t - s v) inverts it.

Training timesteps follow the sampler's own shifted distribution: u ~ U(0, 1), s = shift u /
(1 + (shift - 1) u). With shift 5 half of the training noise levels have s > 0.83: that is where
the few-step student and the DMD scores operate (the student's steps 1000/937.5/833.3/625 are all
above 0.62) and where the scene layout -- colour, shape, place and motion of the objects -- is
decided, which is what prompt fidelity measures; the low-noise end (texture refinement) is easy
for this world and gets the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from engine.model.dit import CausalDiT, PromptKV
from engine.text.schema import reverse_motion


def shifted_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * u / (1.0 + (shift - 1.0) * u)


def sample_sigmas(
    batch: int, shift: float, generator: torch.Generator | None = None, low: float = 0.0, high: float = 1.0
) -> torch.Tensor:
    """[B] noise levels: u ~ U(low, high) pushed through the shift."""
    u = low + (high - low) * torch.rand(batch, generator=generator)
    return shifted_sigma(u, shift)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0, eps [B, F, C, H, W]; sigma [B] or [B, F] -> x_t."""
    s = sigma.reshape(*sigma.shape, *([1] * (x0.dim() - sigma.dim())))
    return (1.0 - s) * x0 + s * eps


def noise_after_context(
    x: torch.Tensor, sigma: torch.Tensor, context_frames: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, F, C, H, W] with its first `context_frames` left clean and the rest noised to each
    sample's level sigma [B] (fresh Gaussian noise): (x_t, per-frame levels [B, F], noised frames [F])."""
    noisy = torch.arange(x.shape[1], device=x.device) >= context_frames
    level = sigma.view(-1, 1) * noisy
    return add_noise(x, torch.randn_like(x), level), level, noisy


def to_x0(x_t: torch.Tensor, flow: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.reshape(*sigma.shape, *([1] * (x_t.dim() - sigma.dim())))
    return x_t - s * flow


def flow_matching_error(
    model: CausalDiT,
    x0: torch.Tensor,
    text: torch.Tensor,
    shift: float,
    clean_prefix: torch.Tensor | None = None,
    **forward: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted minus true flow at random shifted noise levels: (err [B, F, C, H, W] in fp32,
    noisy [B, F]); x0 [B, F, C, H, W].

    clean_prefix [B] (optional): how many leading latent frames of each clip are given clean
    (timestep 0, as the causal student's context) while the rest share the clip's noise level;
    `noisy` marks the frames a loss is taken over."""
    b, frames = x0.shape[:2]
    sigma = sample_sigmas(b, shift).unsqueeze(1).expand(b, frames)  # [B, F]
    noisy = torch.ones(b, frames, dtype=torch.bool)
    if clean_prefix is not None:
        noisy = torch.arange(frames).unsqueeze(0) >= clean_prefix.unsqueeze(1)
        sigma = sigma * noisy
    eps = torch.randn_like(x0)
    x_t = add_noise(x0, eps, sigma)
    pred = model(x_t, sigma * 1000.0, model.encode_prompt(text), **forward)
    return pred.float() - (eps - x0), noisy


def frame_mse(err: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the noisy frames (each frame weighs the same)."""
    return err.pow(2).mean(dim=(2, 3, 4))[noisy].mean()


def flow_matching_loss(
    model: CausalDiT,
    x0: torch.Tensor,
    text: torch.Tensor,
    shift: float,
    clean_prefix: torch.Tensor | None = None,
    **forward: Any,
) -> torch.Tensor:
    """MSE between predicted and true flow over the noisy frames (`flow_matching_error`). The
    teacher's objective, and the fake score's on the student's samples."""
    return frame_mse(*flow_matching_error(model, x0, text, shift, clean_prefix, **forward))


def temporal_difference_loss(err: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """MSE of the change of the flow error from one noisy latent frame to the next.

    With D the frame difference, E|D err|^2 = 2 Var(err) - 2 Cov(err_f, err_f+1): errors that
    repeat in consecutive frames (an object a little too large in all of them) cost nothing
    here, errors that alternate (an object that pulses or wobbles between latent frames) cost
    twice their size. Added to the flow-matching loss it weighs the temporally incoherent part
    of the error more -- where the frame-to-frame motion lives. 0 when no clip has two noisy
    frames in a row (image batches)."""
    pairs = noisy[:, 1:] & noisy[:, :-1]  # [B, F-1]
    if not bool(pairs.any()):
        return err.new_zeros(())
    step = err[:, 1:] - err[:, :-1]
    return frame_mse(step, pairs)


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance of a flow, with an optional contrast against a negative prompt:

        v = v_u + scale (v_c - v_u) + negative_scale (v_c - v_n)

    v_c, v_u, v_n: the flow for the prompt, for no prompt and for the negative prompt (for
    motion guidance: the same prompt with every motion reversed, `engine.text.schema.
    reverse_motion`, so the added term is the part of the prompt's pull that depends on which
    way the objects move).

    `rescale` (guidance rescale, Lin et al. 2024, "Common diffusion noise schedules and sample
    steps are flawed", their phi) mixes in the guided flow scaled, per latent frame, to the
    standard deviation of v_c: v <- rescale * v std(v_c) / std(v) + (1 - rescale) * v, undoing
    the inflation of the flow by the extrapolation. On the tiny teacher it makes objects less
    often too small or cut by the frame border (docs/models.md, "Guidance rescale")."""

    cond: PromptKV
    uncond: PromptKV
    scale: float
    negative: PromptKV | None = None
    negative_scale: float = 0.0
    rescale: float = 0.0

    @staticmethod
    def of(
        model: CausalDiT, text: torch.Tensor, scale: float, motion_scale: float = 0.0, rescale: float = 0.0
    ) -> Guidance:
        """Guidance for prompt rows `text` [B, Lt, Dt]: motion_scale > 0 adds motion guidance,
        rescale > 0 guidance rescale."""
        negative = model.encode_prompt(reverse_motion(text)) if motion_scale else None
        uncond = model.encode_prompt(torch.zeros_like(text))
        return Guidance(model.encode_prompt(text), uncond, scale, negative, motion_scale, rescale)


def guided_flow(model: CausalDiT, x: torch.Tensor, t: torch.Tensor, guidance: Guidance) -> torch.Tensor:
    """The guided flow (see `Guidance`), every prompt in one batched call, in fp32."""
    prompts = [guidance.cond]
    if guidance.scale != 1.0:
        prompts.append(guidance.uncond)
    if guidance.negative is not None and guidance.negative_scale:
        prompts.append(guidance.negative)
    n = len(prompts)
    out = model(torch.cat([x] * n), torch.cat([t] * n), PromptKV.cat(prompts)).float()  # fp32 under autocast
    v_c, *rest = out.chunk(n)
    v = v_c
    if guidance.scale != 1.0:
        v_u = rest.pop(0)
        v = v_u + guidance.scale * (v_c - v_u)
    if rest:
        v = v + guidance.negative_scale * (v_c - rest[0])
    if guidance.rescale and n > 1:
        v = rescale_flow(v, v_c, guidance.rescale)
    return v


def rescale_flow(v: torch.Tensor, v_c: torch.Tensor, amount: float) -> torch.Tensor:
    """Guidance rescale of a guided flow v [B, F, C, H, W] towards the spread of the conditional
    flow v_c, per latent frame (see `Guidance`)."""
    dims = (2, 3, 4)
    ratio = v_c.std(dim=dims, keepdim=True) / v.std(dim=dims, keepdim=True).clamp_min(1e-8)
    return amount * v * ratio + (1.0 - amount) * v


@torch.no_grad()
def euler_sample(
    model: CausalDiT,
    noise: torch.Tensor,  # [B, F, C, H, W]
    guidance: Guidance,
    *,
    steps: int,
    shift: float,
    keep_sigmas: tuple[float, ...] = (),
    prefix: torch.Tensor | None = None,  # [B, P, C, H, W] clean leading frames
) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    """Euler integration of the guided flow ODE from s = 1 to 0 on the shifted grid.

    Returns the final x0 and the states at the grid points whose sigma is (to 1e-4) in
    `keep_sigmas` (for ODE pairs; choose `steps` so they lie on the grid). With a `prefix`, the
    first P frames are context: given clean at timestep 0 (as a clean-prefix teacher trained,
    the causal student's situation) and left as they are; only the frames after them are
    integrated from `noise`.
    """
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    sig = shifted_sigma(u, shift)
    b, frames = noise.shape[:2]
    p = 0 if prefix is None else prefix.shape[1]
    x = noise if prefix is None else torch.cat([prefix, noise[:, p:]], dim=1)
    kept: dict[float, torch.Tensor] = {}
    for i in range(steps):
        s, s_next = float(sig[i]), float(sig[i + 1])
        for want in keep_sigmas:
            if abs(s - want) < 1e-4:
                kept[want] = x.clone()
        t = torch.full((b, frames), s * 1000.0)
        t[:, :p] = 0.0
        v = guided_flow(model, x, t, guidance)
        v[:, :p] = 0.0
        x = x + (s_next - s) * v
    return x, kept
