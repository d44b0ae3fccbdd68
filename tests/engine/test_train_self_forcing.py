"""The self-forcing stage's pieces on the micro `test` preset: the DMD direction after a clean
context and its real score's scales per kind of window, a rollout that continues a given past,
and generator updates that follow the DMD gradient and the regression onto the world's next
chunk."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from train_env import CFG, Inputs, decreased, text_batch

from engine.model.dit import CausalDiT
from engine.sampler import FlowMatchSchedule
from engine.text.schema import ROW_WIDTH, ROWS
from engine.train.dmd import DMDSettings, dmd_direction
from engine.train.stages.self_forcing import world_regression_loss
from engine.train.student import rollout

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dmd_with_a_clean_context_scores_only_what_follows_it() -> None:
    """With context frames both scores see them clean at timestep 0 and the DMD direction is
    zero there; the frames after them are noised to one level and get a direction."""
    torch.manual_seed(0)
    real, fake = CausalDiT(CFG.dit), CausalDiT(CFG.dit)
    f = CFG.sampler.frames_per_chunk
    x = torch.randn(2, 2 * f, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    seen_real, seen_fake = Inputs(real), Inputs(fake)
    g, stats = dmd_direction(x, text_batch(2), real, fake, DMDSettings(), context_frames=f)
    for xs, ts in seen_real.calls + seen_fake.calls:
        assert torch.equal(xs[:2, :f], x[:, :f]) and torch.all(ts[:, :f] == 0)
        assert torch.all(ts[:, f:] == ts[:, f : f + 1]) and torch.all(ts[:, f:] > 0)
    assert torch.all(g[:, :f] == 0) and g[:, f:].abs().mean() > 0 and stats["dmd_grad"] > 0
    plain, _ = dmd_direction(x, text_batch(2), real, fake, DMDSettings())
    assert plain[:, :f].abs().mean() > 0


def test_windows_after_a_clean_context_take_their_own_guidance() -> None:
    """`context_guidance` and `context_motion_guidance` set the real score of a window with
    clean context frames -- a third prompt (the motion-reversed one) in its batched call when
    motion guidance is on -- and leave the windows without context at `guidance`; a context
    window whose object wraps takes `wrap_guidance` and `wrap_motion_guidance`."""
    torch.manual_seed(0)
    dit = dataclasses.replace(CFG.dit, text_len=ROWS, text_dim=ROW_WIDTH)  # grounded prompt rows
    real, fake = CausalDiT(dit), CausalDiT(dit)
    f = CFG.sampler.frames_per_chunk
    x = torch.randn(2, 2 * f, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    text = torch.randn(2, ROWS, ROW_WIDTH)
    split = DMDSettings(guidance=4.0, context_guidance=2.0, context_motion_guidance=2.0)

    def direction(settings: DMDSettings, context: int, wrap: bool = False) -> tuple[torch.Tensor, list[int]]:
        torch.manual_seed(1)
        seen = Inputs(real)
        g, _ = dmd_direction(x, text, real, fake, settings, context_frames=context, wrap=wrap)
        seen.handle.remove()
        return g, [xs.shape[0] for xs, _ in seen.calls]

    g, batches = direction(split, f)
    same, _ = direction(
        DMDSettings(guidance=2.0, motion_guidance=2.0, context_guidance=2.0, context_motion_guidance=2.0), f
    )
    default, _ = direction(DMDSettings(), f)
    assert batches == [6] and torch.allclose(g, same)  # cond, uncond and reversed rows
    assert not torch.allclose(g[:, f:], default[:, f:], atol=1e-4)
    g, batches = direction(split, 0)
    joint, _ = direction(DMDSettings(guidance=4.0), 0)
    assert batches == [4] and torch.allclose(g, joint)
    strong = dataclasses.replace(split, wrap_guidance=6.0, wrap_motion_guidance=0.0)
    g, batches = direction(strong, f, wrap=True)
    alike, _ = direction(dataclasses.replace(strong, context_guidance=6.0, context_motion_guidance=0.0), f)
    assert batches == [4] and torch.allclose(g, alike)  # wrap: CFG 6 without motion guidance
    g, _ = direction(strong, f)  # a context window without a wrap keeps the context scales
    assert torch.allclose(g, direction(split, f)[0])
    g, batches = direction(split, f, wrap=True)  # unset (< 0): a wrap window takes them too
    assert batches == [6] and torch.allclose(g, direction(split, f)[0])


def test_a_rollout_continues_a_given_past() -> None:
    """`rollout(context=...)`: the given chunk comes back as it is and enters the cache (the
    chunk after it depends on it), and only the sampled chunk's exit pass keeps a graph."""
    torch.manual_seed(0)
    student = CausalDiT(CFG.dit)
    schedule = FlowMatchSchedule(CFG.sampler)
    prompt = student.encode_prompt(text_batch(2))
    f = CFG.sampler.frames_per_chunk
    shape = (2, f, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)

    def continue_from(past: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        return rollout(student, schedule, CFG, prompt, 2, grad_chunks=(1,), generator=g, context=past).latents

    past, other = torch.randn(shape), torch.randn(shape)
    out = continue_from(past)
    assert out.shape == (2, 2 * f, *shape[2:]) and torch.equal(out[:, :f], past)
    assert not torch.allclose(out[:, f:], continue_from(other)[:, f:], atol=1e-4)
    params = list(student.parameters())
    given = torch.autograd.grad(out[:, :f].sum(), params, retain_graph=True, allow_unused=True)
    assert all(g is None or not g.any() for g in given)
    sampled = torch.autograd.grad(out[:, f:].sum(), params, allow_unused=True)
    assert any(g is not None and g.any() for g in sampled)


def test_self_forcing_generator_follows_the_dmd_gradient() -> None:
    """A rollout through the KV cache keeps a graph only on the exit passes of the window's
    chunks, and generator updates on the DMD surrogate move the samples along -g: with the
    rollout noise fixed, 0.5 ||x - (x_start - g)||^2 for the direction g computed at the start
    decreases."""
    torch.manual_seed(0)
    student, real, fake = CausalDiT(CFG.dit), CausalDiT(CFG.dit), CausalDiT(CFG.dit)
    schedule = FlowMatchSchedule(CFG.sampler)
    text = text_batch(2)
    f = CFG.sampler.frames_per_chunk

    def generate() -> torch.Tensor:
        roll = rollout(
            student,
            schedule,
            CFG,
            student.encode_prompt(text),
            4,
            exit_steps=[3, 3, 1, 2],
            grad_chunks=(2, 3),
            generator=torch.Generator().manual_seed(7),
        )
        return roll.latents  # [B, 4 * f, C, h, w]

    latents = generate()
    params = list(student.parameters())
    context = torch.autograd.grad(latents[:, : 2 * f].sum(), params, retain_graph=True, allow_unused=True)
    assert all(g is None or not g.any() for g in context)  # chunks 0, 1: no graph into the student
    window = torch.autograd.grad(latents[:, 2 * f :].sum(), params, retain_graph=True, allow_unused=True)
    assert any(g is not None and g.any() for g in window)
    x = latents[:, 2 * f :]
    torch.manual_seed(1)
    g, _ = dmd_direction(x.detach(), text, real, fake, DMDSettings())
    target = (x.detach() - g).detach()
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        x = generate()[:, 2 * f :]
        loss = 0.5 * torch.nn.functional.mse_loss(x, target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert decreased(losses, 0.8), losses


def test_world_regression_pulls_the_continuation_to_the_worlds_next_chunk() -> None:
    """On a world window the student continues the clip's first chunk; the regression term is
    normalised over the whole window as the DMD surrogate is (the past is the clip's own, so only
    the sampled chunk adds to it), and generator steps on it bring the sampled chunk to the
    clip's next one: the logged gap shrinks."""
    torch.manual_seed(0)
    student = CausalDiT(CFG.dit)
    schedule = FlowMatchSchedule(CFG.sampler)
    text = text_batch(2)
    f = CFG.sampler.frames_per_chunk
    clip = torch.randn(2, 2 * f, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    clip[:, f:] = 0.5  # a next chunk the small student can reach

    def continuation() -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        prompt = student.encode_prompt(text)
        return rollout(student, schedule, CFG, prompt, 2, exit_steps=[3, 1], grad_chunks=(1,), generator=g,
                       context=clip[:, :f]).latents  # fmt: skip

    x = continuation()
    loss, gap = world_regression_loss(x, clip, f)
    chunk = (x - clip)[:, f:]
    torch.testing.assert_close(loss, 0.5 * chunk.pow(2).sum() / x.numel())
    assert gap == pytest.approx(chunk.abs().mean().item())
    gaps = [gap]
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    for _ in range(12):
        opt.zero_grad()
        loss, gap = world_regression_loss(continuation(), clip, f)
        loss.backward()
        opt.step()
        gaps.append(gap)
    assert decreased(gaps, 0.8), gaps
