"""An adversarial term on the world's continuations: DMD2's GAN, on the fake score's features.

DMD follows the real score -- the teacher -- to its likeliest answer, so a student distilled
with it can be no better than its teacher at what the teacher gets wrong; after an object leaves
the frame the teacher's likeliest answer is an empty frame (docs/models.md, "Teaching the wrap").
DMD2 (Yin et al. 2024) adds a GAN whose real samples are data, not the teacher's: a small head
on the fake score network's features classifies noised samples as data or generated, the fake
score's backbone and the head learn to tell them apart, and the generator learns to fool them.

Here the data are the world's own continuations. On a *world* window (`engine.train.windows`)
the student samples the chunk after the world's clean past, and the world's next chunk after
that same past is the real sample -- a paired, conditional real/fake question: "is this what
comes after this past, for this prompt?". After an exit the world's answer is the object coming
in at the opposite border, one of many places it may enter, so unlike a squared error onto the
world's chunk (mean-seeking: docs/models.md, "A regression onto the world's next chunk") the
term rewards an entry anywhere the discriminator cannot tell from the world's.

Both sides see the window as the fake score does in DMD: the past clean at timestep 0, the
sampled chunk noised to one random level (the same level for the real and the generated sample
of a pair). The head reads the last block's tokens of the noised frames: one logit per token,
averaged per sample. Losses are the non-saturating ones (softplus). The generator's part is
returned as a direction in x normalised per sample to the DMD direction's scale, so the two add
with a weight that says how hard the GAN pulls against DMD (`adversarial_direction`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.model.dit import CausalDiT
from engine.train.flow import noise_after_context, sample_sigmas


@dataclass(frozen=True)
class AdversarialSettings:
    """The noise levels both sides see: u ~ U(min_u, max_u) through the shift (`flow.sample_sigmas`),
    the DMD step's shift and lower bound, and an upper bound of its own (u 0.5: sigma 0.67 at
    shift 2). With DMD's 0.98 and one head update per world window the head stayed at chance;
    with 0.5 and an update every iteration it learned (which of the two mattered is not known)."""

    shift: float = 2.0
    min_u: float = 0.02
    max_u: float = 0.5


class DiscriminatorHead(nn.Module):
    """One logit per token from the fake score's last block: [B, L, dim] -> [B, L]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens).squeeze(-1)


@contextmanager
def last_block_tokens(model: CausalDiT) -> Iterator[list[torch.Tensor]]:
    """Collects the output tokens [B, L, dim] of `model`'s last block on each forward inside."""
    seen: list[torch.Tensor] = []
    handle = model.blocks[-1].register_forward_hook(lambda _m, _a, out: seen.append(out))
    try:
        yield seen
    finally:
        handle.remove()


def critic_logits(
    fake: CausalDiT,
    head: DiscriminatorHead,
    x: torch.Tensor,  # [B, F, C, h, w] windows: `context_frames` clean past, then the sampled chunk
    text: torch.Tensor,  # [B, Lt, Dt]
    sigma: torch.Tensor,  # [B] noise level of each window's sampled chunk
    context_frames: int,
) -> torch.Tensor:
    """[B] the head's mean logit over the tokens of the noised frames (> 0: the world's)."""
    frames = x.shape[1]
    x_t, level, _ = noise_after_context(x, sigma, context_frames)  # level [B, F]
    with last_block_tokens(fake) as seen:
        fake(x_t, level * 1000.0, fake.encode_prompt(text))
    tokens = seen[-1].unflatten(1, (frames // fake.cfg.patch_size[0], -1))  # [B, F', S, dim]
    first = context_frames // fake.cfg.patch_size[0]
    return head(tokens[:, first:].flatten(1, 2)).float().mean(dim=1)


def discriminator_loss(
    fake: CausalDiT,
    head: DiscriminatorHead,
    world: torch.Tensor,  # [B, F, C, h, w] the world's windows
    generated: torch.Tensor,  # [B, F, C, h, w] the student's windows after the same pasts (no graph)
    text: torch.Tensor,
    context_frames: int,
    settings: AdversarialSettings,
) -> tuple[torch.Tensor, dict[str, float]]:
    """softplus(-D(world)) + softplus(D(generated)), each pair noised to one level; logs the share
    of each side the critic classifies right."""
    sigma = sample_sigmas(world.shape[0], settings.shift, low=settings.min_u, high=settings.max_u)
    logits = critic_logits(
        fake, head, torch.cat([world, generated]), text.repeat(2, 1, 1), sigma.repeat(2), context_frames
    )
    real, fake_logit = logits.chunk(2)
    loss = F.softplus(-real).mean() + F.softplus(fake_logit).mean()
    stats = {
        "d_real_right": (real > 0).float().mean().item(),
        "d_fake_right": (fake_logit < 0).float().mean().item(),
    }
    return loss, stats


def adversarial_direction(
    fake: CausalDiT,
    head: DiscriminatorHead,
    x: torch.Tensor,  # [B, F, C, h, w] the student's windows (no graph)
    text: torch.Tensor,
    context_frames: int,
    settings: AdversarialSettings,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The generator's non-saturating GAN gradient d softplus(-D(x)) / dx, normalised per sample
    to mean |.| = 1 over the noised frames (zero on the clean past): a direction on the DMD
    direction's scale (mean |g| ~0.8), so a weight says how hard the GAN pulls against DMD. Left
    as it is, the head's input gradient grew to 10-50 times DMD's within 200 steps of a run and
    would have taken over the student's updates (docs/BENCHMARKS.md, "Twenty-fifth session").
    Logs the gradient's own size (`gan_raw`: mean |.| times the window's size, DMD's units) and
    the generator's loss (`gan_g`). The critic's weights get no gradient."""
    leaf = x.detach().requires_grad_(True)
    sigma = sample_sigmas(x.shape[0], settings.shift, low=settings.min_u, high=settings.max_u)
    loss = F.softplus(-critic_logits(fake, head, leaf, text, sigma, context_frames)).mean()
    (grad,) = torch.autograd.grad(loss, leaf)
    grad[:, :context_frames] = 0  # the past is given, as in DMD (the critic reads it, bidirectionally)
    size = grad[:, context_frames:].abs().mean(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1, 1)
    direction = grad / size.clamp_min(1e-20)
    return direction, {"gan_g": loss.item(), "gan_raw": (size.mean() * x.numel()).item()}
