"""Distribution matching distillation (DMD) pieces of the Self Forcing stage.

For generated latents x (a window of a student rollout) the gradient of KL(p_student || p_data)
is estimated from two scores on a noised copy x_t = (1 - s) x + s eps at a random level s: the
*real* score -- the frozen teacher with classifier-free (and optionally motion) guidance,
optionally rescaled, with scales of their own for windows after a clean context -- and the
*fake* score -- a copy of the teacher trained online (flow matching) on the student's own
samples. In x0 terms the direction is
g = x0_fake(x_t) - x0_real(x_t), normalised per sample by mean |x - x0_real| (DMD's normaliser,
which makes the step size independent of the noise level); the generator minimises
0.5 * ||x - stopgrad(x - g)||^2, whose gradient with respect to x is g.

With `context_frames` > 0 the window's first frames are not noised: both scores see them clean
at timestep 0, as a clean-prefix teacher was trained, and g is zero there. The divergence is
then the one between the conditionals of the rest given that past -- what the causal student
samples at inference, and where the prompt's motion decides what comes next (with every frame
noised to one level the teacher barely tells directions apart; docs/models.md, "Why the
motion is missing").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.model.dit import CausalDiT
from engine.train.flow import Guidance, guided_flow, noise_after_context, sample_sigmas, to_x0


@dataclass(frozen=True)
class DMDSettings:
    """The real score's guidance (`flow.Guidance`) and the noise levels DMD samples.

    `guidance` and `motion_guidance` apply to windows with every frame noised; windows scored
    after clean context frames take `context_guidance` and `context_motion_guidance` instead.
    There the teacher reads the direction from the prompt (docs/models.md, "Why the motion is
    missing"), so motion guidance amplifies something; in a joint window it has next to nothing
    to amplify. Context windows whose object wraps in the scored chunk take `wrap_guidance` and
    `wrap_motion_guidance` where those are set (>= 0; else the context windows' scales): the
    unguided teacher answers an exit with an empty frame, and only a strong CFG brings the
    object back at the opposite border (docs/models.md, "Wrap windows in the DMD")."""

    guidance: float = 4.0
    motion_guidance: float = 0.0
    guidance_rescale: float = 0.0
    shift: float = 5.0
    min_u: float = 0.02
    max_u: float = 0.98
    context_guidance: float = 4.0
    context_motion_guidance: float = 0.0
    wrap_guidance: float = -1.0  # < 0: the context windows' scale
    wrap_motion_guidance: float = -1.0

    def scales(self, context_frames: int, wrap: bool = False) -> tuple[float, float]:
        """(CFG scale, motion guidance) of the real score for a window with that many clean
        frames, `wrap` if its object wraps in the scored frames."""
        if context_frames and wrap:
            scale, motion = self.wrap_guidance, self.wrap_motion_guidance
            return (
                scale if scale >= 0 else self.context_guidance,
                motion if motion >= 0 else self.context_motion_guidance,
            )
        if context_frames:
            return self.context_guidance, self.context_motion_guidance
        return self.guidance, self.motion_guidance


@torch.no_grad()
def dmd_direction(
    x: torch.Tensor,  # [B, F, C, h, w] generated latents (no graph)
    text: torch.Tensor,  # [B, Lt, Dt]
    real: CausalDiT,
    fake: CausalDiT,
    settings: DMDSettings,
    context_frames: int = 0,
    wrap: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The normalised DMD direction g = (x0_fake - x0_real) / mean|x - x0_real| at a random level
    (means over the noised frames; the first `context_frames` are clean context, g = 0 there;
    `wrap`: the window's object wraps in the noised frames, see `DMDSettings`)."""
    b, frames = x.shape[:2]
    level = sample_sigmas(b, settings.shift, low=settings.min_u, high=settings.max_u)
    x_t, sigma, noisy = noise_after_context(x, level, context_frames)  # sigma [B, F], noisy [F]
    t = sigma * 1000.0
    scale, motion = settings.scales(context_frames, wrap)
    guidance = Guidance.of(real, text, scale, motion, settings.guidance_rescale)
    x0_real = to_x0(x_t, guided_flow(real, x_t, t, guidance), sigma)
    x0_fake = to_x0(x_t, fake(x_t, t, fake.encode_prompt(text)).float(), sigma)
    gap = (x - x0_real)[:, noisy].abs()
    norm = gap.mean(dim=(1, 2, 3, 4)).clamp_min(1e-6).view(b, 1, 1, 1, 1)
    grad = torch.nan_to_num((x0_fake - x0_real) / norm) * noisy.view(1, frames, 1, 1, 1)
    return grad, {"dmd_grad": grad[:, noisy].abs().mean().item(), "real_gap": gap.mean().item()}


def dmd_loss(
    x: torch.Tensor,  # [B, F, C, h, w] generated latents (with graph)
    text: torch.Tensor,
    real: CausalDiT,
    fake: CausalDiT,
    settings: DMDSettings,
    context_frames: int = 0,
    wrap: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Surrogate 0.5 * mean ||x - stopgrad(x - g)||^2 whose gradient in x is g (per element / N)."""
    grad, stats = dmd_direction(x.detach(), text, real, fake, settings, context_frames, wrap)
    return direction_loss(x, grad), stats


def direction_loss(x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """0.5 * mean ||x - stopgrad(x - direction)||^2: its gradient in x is direction / x.numel()."""
    return 0.5 * F.mse_loss(x, (x.detach() - direction).detach())
