"""Distribution matching distillation (DMD) pieces of the Self Forcing stage.

For generated latents x (a window of a student rollout) the gradient of KL(p_student || p_data)
is estimated from two scores on a noised copy x_t = (1 - s) x + s eps at a random level s:
the *real* score -- the frozen teacher with classifier-free (and optionally motion) guidance --
and the *fake* score -- a copy of the teacher trained online (flow matching) on the student's
own samples. In x0 terms the direction is  g = x0_fake(x_t) - x0_real(x_t), normalised per
sample by mean |x - x0_real| (DMD's normaliser, which makes the step size independent of the
noise level); the generator minimises 0.5 * ||x - stopgrad(x - g)||^2, whose gradient with respect to x is g.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.model.dit import CausalDiT
from engine.train.flow import Guidance, add_noise, guided_flow, sample_sigmas, timesteps, to_x0


@dataclass(frozen=True)
class DMDSettings:
    guidance: float = 4.0
    motion_guidance: float = 0.0
    shift: float = 5.0
    min_u: float = 0.02
    max_u: float = 0.98


@torch.no_grad()
def dmd_direction(
    x: torch.Tensor,  # [B, F, C, h, w] generated latents (no graph)
    text: torch.Tensor,  # [B, Lt, Dt]
    real: CausalDiT,
    fake: CausalDiT,
    settings: DMDSettings,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The normalised DMD direction g = (x0_fake - x0_real) / mean|x - x0_real| at a random level."""
    b, frames = x.shape[:2]
    sigma = sample_sigmas(b, settings.shift, low=settings.min_u, high=settings.max_u)
    x_t = add_noise(x, torch.randn_like(x), sigma)
    t = timesteps(sigma, frames)
    guidance = Guidance.of(real, text, settings.guidance, settings.motion_guidance)
    x0_real = to_x0(x_t, guided_flow(real, x_t, t, guidance), sigma)
    x0_fake = to_x0(x_t, fake(x_t, t, fake.encode_prompt(text)).float(), sigma)
    norm = (x - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
    grad = torch.nan_to_num((x0_fake - x0_real) / norm)
    return grad, {"dmd_grad": grad.abs().mean().item(), "real_gap": (x - x0_real).abs().mean().item()}


def dmd_loss(
    x: torch.Tensor,  # [B, F, C, h, w] generated latents (with graph)
    text: torch.Tensor,
    real: CausalDiT,
    fake: CausalDiT,
    settings: DMDSettings,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Surrogate 0.5 * mean ||x - stopgrad(x - g)||^2 whose gradient in x is g (per element / N)."""
    grad, stats = dmd_direction(x.detach(), text, real, fake, settings)
    return 0.5 * F.mse_loss(x, (x.detach() - grad).detach()), stats


def fake_score_loss(fake: CausalDiT, x0: torch.Tensor, text: torch.Tensor, shift: float) -> torch.Tensor:
    """Flow matching of the fake score on (detached) student samples x0 [B, F, C, h, w]."""
    b, frames = x0.shape[:2]
    sigma = sample_sigmas(b, shift)
    eps = torch.randn_like(x0)
    pred = fake(add_noise(x0, eps, sigma), timesteps(sigma, frames), fake.encode_prompt(text))
    return F.mse_loss(pred.float(), eps - x0)
