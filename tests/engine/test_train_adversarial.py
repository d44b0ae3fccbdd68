"""DMD2's GAN on the world's continuations (engine/train/adversarial.py), on the micro `test`
preset: the head on the fake score learns to tell the world's next chunk from another one after
the same past, and the generator's direction moves a chunk towards what it calls the world's.
(The world here fades: its next chunk is its past dimmed, which a 2-layer critic learns in a few
dozen steps; whether a chunk repeats its past, it does not learn in a hundred.)"""

from __future__ import annotations

import pytest
import torch
from train_env import CFG, Inputs, decreased, text_batch

from engine.model.dit import CausalDiT
from engine.train.adversarial import (
    AdversarialSettings,
    DiscriminatorHead,
    adversarial_direction,
    critic_logits,
    discriminator_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

F = CFG.sampler.frames_per_chunk
SETTINGS = AdversarialSettings(shift=1.0, min_u=0.02, max_u=0.5)


def windows(batch: int, world: bool) -> torch.Tensor:
    """[B, 2F, C, h, w] a random past, then the world's chunk (the past dimmed to a tenth) or
    another random chunk."""
    past = torch.randn(batch, F, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    chunk = 0.1 * past if world else torch.randn_like(past)
    return torch.cat([past, chunk], dim=1)


def trained_critic(steps: int) -> tuple[CausalDiT, DiscriminatorHead, list[float]]:
    torch.manual_seed(0)
    fake, head = CausalDiT(CFG.dit), DiscriminatorHead(CFG.dit.dim)
    opt = torch.optim.Adam([*fake.parameters(), *head.parameters()], lr=1e-3)
    losses = []
    for _ in range(steps):
        world, other = windows(4, True), windows(4, False)
        loss, _ = discriminator_loss(fake, head, world, other, text_batch(4), F, SETTINGS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return fake, head, losses


def test_the_critic_learns_the_worlds_continuation_from_another() -> None:
    """Both sides see the past clean at timestep 0 and a pair's chunks at one noise level; the
    loss starts at 2 ln 2 (a head that cannot tell) and falls as the head learns which chunk
    follows the past as the world's does, and then it tells both sides apart on new windows."""
    torch.manual_seed(0)
    fake, head = CausalDiT(CFG.dit), DiscriminatorHead(CFG.dit.dim)
    seen = Inputs(fake)
    world, other = windows(2, True), windows(2, False)
    loss, stats = discriminator_loss(fake, head, world, other, text_batch(2), F, SETTINGS)
    ((xs, ts),) = seen.calls
    assert torch.equal(xs[:, :F], torch.cat([world, other])[:, :F]) and torch.all(ts[:, :F] == 0)
    assert torch.equal(ts[:2, F:], ts[2:, F:]) and torch.all(ts[:, F:] > 0)  # one level per pair
    assert loss.item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item(), abs=0.3)
    assert set(stats) == {"d_real_right", "d_fake_right"}
    fake, head, losses = trained_critic(60)
    assert decreased(losses, 0.5)
    _, stats = discriminator_loss(fake, head, windows(8, True), windows(8, False), text_batch(8), F, SETTINGS)
    assert stats["d_real_right"] >= 0.75 and stats["d_fake_right"] >= 0.75


def test_the_adversarial_direction_moves_a_chunk_towards_the_worlds() -> None:
    """The direction is the gradient of softplus(-D), normalised per sample: zero on the clean
    past, no gradient into the critic's weights, and a small step against it raises the logit the
    critic gives the chunk."""
    fake, head, _ = trained_critic(60)
    fake.zero_grad(set_to_none=True)
    head.zero_grad(set_to_none=True)
    x, text = windows(4, False), text_batch(4)
    torch.manual_seed(3)
    push, stats = adversarial_direction(fake, head, x, text, F, SETTINGS)
    assert torch.all(push[:, :F] == 0)
    assert push[:, F:].abs().mean(dim=(1, 2, 3, 4)) == pytest.approx(torch.ones(4))  # per sample
    assert stats["gan_raw"] > 0 and stats["gan_g"] > 0
    assert all(p.grad is None for p in [*fake.parameters(), *head.parameters()])

    def logit(window: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(4)
        sigma = torch.full((4,), 0.3)
        with torch.no_grad():
            return critic_logits(fake, head, window, text, sigma, F)

    moved = x - 0.05 * push / push.abs().max()
    assert logit(moved).mean() > logit(x).mean()
