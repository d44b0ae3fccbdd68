"""Each training stage's objective decreases when its model trains for a few steps on the
micro `test` preset (a fixed batch and fixed noise, so the objective is a fixed function)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from train_env import CFG, Inputs, decreased, text_batch

from engine.data.render import RenderConfig, make_scene, render_scene
from engine.data.tensors import to_model_input
from engine.data.world import BackgroundSpec, ObjectSpec, SceneSpec
from engine.model.dit import CausalDiT
from engine.sampler import FlowMatchSchedule
from engine.train.clips import ClipConfig, sample_clip
from engine.train.flow import (
    Guidance,
    euler_sample,
    flow_matching_error,
    flow_matching_loss,
    frame_mse,
    guided_flow,
    temporal_difference_loss,
)
from engine.train.models import training_preset
from engine.train.stages.ode import ode_loss, teacher_trajectory
from engine.train.stages.teacher import clean_prefixes
from engine.train.stages.vae import VAEStageConfig, step_ratio, vae_losses
from engine.vae.tiny import TinyVAE

pytestmark = pytest.mark.usefixtures("one_thread")


def _fit(loss_fn, params, steps: int, lr: float) -> list[float]:  # type: ignore[no-untyped-def]
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        torch.manual_seed(123)  # same noise / noise levels every step
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_a_scene_sampler_slices_the_world() -> None:
    """`sample_clip(..., scene)` renders the given scene with the stream rules and a caption of
    the training grammar (bench/motion_slice.py builds its motion-only dataset this way)."""
    from engine.data.parse import parse_caption
    from engine.data.vocab import COLOURS

    spec = SceneSpec((ObjectSpec("red", "square", "left", "medium"),), BackgroundSpec("black", "plain"))
    clip = sample_clip(np.random.default_rng(0), ClipConfig(frames=16, p_stream_start=1.0), lambda rng: spec)
    assert clip.spec == spec
    said = parse_caption(clip.caption).objects[0]
    assert (said.colour, said.shape, said.motion) == ("red", "square", "left")
    red = np.abs(clip.frames.astype(int) - np.array(COLOURS["red"])).sum(-1) < 60  # [T, H, W]
    xs = [float(np.nonzero(f)[1].mean()) for f in red[[0, -1]]]
    assert xs[0] - xs[1] > 8.0, xs  # 1 s at 0.12-0.18 frame widths/s: 15-23 px to the left


def test_vae_stage_loss_decreases() -> None:
    torch.manual_seed(0)
    vae = TinyVAE(CFG.vae)
    clips = ClipConfig(width=CFG.width, height=CFG.height, frames=8)
    rng = np.random.default_rng(0)
    video = to_model_input(np.stack([sample_clip(rng, clips).frames for _ in range(2)]))
    losses = _fit(lambda: vae_losses(vae, video, VAEStageConfig())["loss"], vae.parameters(), 40, 3e-3)
    assert decreased(losses, 0.6), losses


def test_step_ratio_tells_even_motion_from_stutter() -> None:
    """Source clips move evenly (~1); holding each latent frame's first frame for 4 frames (the
    stutter of a decoder that draws the 4 frames alike) scores 0."""
    spec = SceneSpec((ObjectSpec("red", "circle", "right", "large"),), BackgroundSpec("black", "plain"))
    render = RenderConfig(width=64, height=64, num_frames=16)
    clip = render_scene(make_scene(spec, np.random.default_rng(1), render), render)
    assert 0.5 < step_ratio(clip, 4) < 2.0
    held = np.repeat(clip[::4], 4, axis=0)
    assert step_ratio(held, 4) == 0.0


def test_teacher_stage_loss_decreases() -> None:
    torch.manual_seed(0)
    dit = CausalDiT(CFG.dit)
    x0 = torch.randn(2, 6, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    text = text_batch(2)
    losses = _fit(lambda: flow_matching_loss(dit, x0, text, 5.0), dit.parameters(), 40, 3e-3)
    assert decreased(losses, 0.7), losses


def test_temporal_difference_loss_charges_what_changes_between_frames() -> None:
    """An error repeated in every frame costs nothing; one that alternates costs 4x its square;
    pairs with a clean frame (a prefix) and 1-frame clips (image batches) are not counted."""
    torch.manual_seed(0)
    e = torch.randn(1, 1, 2, 3, 3)
    steady = e.expand(2, 4, 2, 3, 3)
    alternating = torch.cat([e, -e, e, -e], dim=1).expand(2, 4, 2, 3, 3)
    noisy = torch.ones(2, 4, dtype=torch.bool)
    assert float(temporal_difference_loss(steady, noisy)) == 0.0
    assert torch.allclose(temporal_difference_loss(alternating, noisy), 4 * frame_mse(alternating, noisy))
    prefix = noisy.clone()
    prefix[:, 0] = False  # frame 0 clean: its jump to frame 1 is not the model's
    jump = steady.clone()
    jump[:, 0] += 5.0
    assert float(temporal_difference_loss(jump, prefix)) == 0.0
    assert float(temporal_difference_loss(jump, noisy)) > 0.0
    assert float(temporal_difference_loss(e.expand(3, 1, 2, 3, 3), torch.ones(3, 1, dtype=torch.bool))) == 0.0


def test_teacher_temporal_term_decreases_with_the_flow_loss() -> None:
    """The teacher's objective with the temporal-difference term (weight 1): both parts fall."""
    torch.manual_seed(0)
    dit = CausalDiT(CFG.dit)
    x0 = torch.randn(2, 6, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    text = text_batch(2)
    parts: list[tuple[float, float]] = []

    def loss() -> torch.Tensor:
        err, noisy = flow_matching_error(dit, x0, text, 5.0)
        flow, temporal = frame_mse(err, noisy), temporal_difference_loss(err, noisy)
        parts.append((flow.item(), temporal.item()))
        return flow + temporal

    _fit(loss, dit.parameters(), 40, 3e-3)
    first, last = parts[0], parts[-1]
    assert last[0] < 0.7 * first[0] and last[1] < 0.7 * first[1], (first, last)


def test_teacher_clean_prefix_is_context_not_target() -> None:
    """A clip's clean prefix enters the model as it is, at timestep 0; the rest shares one noise
    level; the loss ignores what the model predicts for the prefix."""
    torch.manual_seed(0)
    dit = CausalDiT(CFG.dit)
    x0 = torch.randn(2, 6, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    prefix = torch.tensor([2, 5])
    seen: dict[str, torch.Tensor] = {}

    def spoil_prefix(module, args, output):  # type: ignore[no-untyped-def]
        seen["x"], seen["t"] = args[0], args[1]
        spoiled = output.clone()
        for i, k in enumerate(prefix.tolist()):
            spoiled[i, :k] += 100.0
        return spoiled

    torch.manual_seed(1)
    plain = flow_matching_loss(dit, x0, text_batch(2), 5.0, prefix)
    handle = dit.register_forward_hook(spoil_prefix)
    torch.manual_seed(1)
    spoiled = flow_matching_loss(dit, x0, text_batch(2), 5.0, prefix)
    handle.remove()
    assert torch.allclose(plain, spoiled)
    for i, k in enumerate(prefix.tolist()):
        assert torch.equal(seen["x"][i, :k], x0[i, :k])
        assert torch.all(seen["t"][i, :k] == 0)
        assert torch.all(seen["t"][i, k:] == seen["t"][i, k]) and seen["t"][i, k] > 0
    rng = np.random.default_rng(0)
    assert clean_prefixes(64, 6, 0.0, rng) is None
    every = clean_prefixes(64, 6, 1.0, rng)
    assert every is not None and int(every.min()) >= 1 and int(every.max()) <= 5


def test_guided_flow_adds_the_motion_contrast_term() -> None:
    """One batched call gives v_u + g (v_c - v_u) + m (v_c - v_n), the three flows the model
    gives one at a time; scale 1 without a negative prompt is the plain conditional flow."""
    torch.manual_seed(0)
    dit = CausalDiT(CFG.dit).eval()
    x = torch.randn(2, 3, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    t = torch.full((2, 3), 700.0)
    cond, neg = dit.encode_prompt(text_batch(2)), dit.encode_prompt(-text_batch(2))
    uncond = dit.encode_prompt(torch.zeros_like(text_batch(2)))
    with torch.no_grad():
        v_c, v_u, v_n = (dit(x, t, p) for p in (cond, uncond, neg))
        both = guided_flow(dit, x, t, Guidance(cond, uncond, 3.0, neg, 2.0))
        plain = guided_flow(dit, x, t, Guidance(cond, uncond, 1.0))
    assert torch.allclose(both, v_u + 3.0 * (v_c - v_u) + 2.0 * (v_c - v_n), atol=1e-5)
    assert torch.allclose(plain, v_c, atol=1e-6)
    assert not torch.allclose(both, v_u + 3.0 * (v_c - v_u), atol=1e-3)  # the term is there


def test_guidance_rescale_matches_the_conditional_spread_per_frame() -> None:
    """Rescale 1 gives the guided flow's direction with v_c's standard deviation in every latent
    frame; 0.5 lies half way; 0 (the default) and a plain conditional flow are left alone."""
    torch.manual_seed(0)
    dit = CausalDiT(CFG.dit).eval()
    x = torch.randn(2, 3, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    t = torch.tensor([[900.0, 500.0, 100.0], [700.0, 700.0, 0.0]])
    cond, uncond = dit.encode_prompt(text_batch(2)), dit.encode_prompt(torch.zeros_like(text_batch(2)))
    dims = (2, 3, 4)
    with torch.no_grad():
        v_c = dit(x, t, cond)
        guided = guided_flow(dit, x, t, Guidance(cond, uncond, 4.0))
        full = guided_flow(dit, x, t, Guidance(cond, uncond, 4.0, rescale=1.0))
        half = guided_flow(dit, x, t, Guidance(cond, uncond, 4.0, rescale=0.5))
        plain = guided_flow(dit, x, t, Guidance(cond, uncond, 1.0, rescale=1.0))
    assert not torch.allclose(guided.std(dim=dims), v_c.std(dim=dims), rtol=0.05)  # CFG inflates
    assert torch.allclose(full.std(dim=dims), v_c.std(dim=dims), rtol=1e-4)
    ratio = (full / guided).flatten(2)  # one positive factor per frame
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), rtol=1e-3) and bool((ratio > 0).all())
    assert torch.allclose(half, 0.5 * (guided + full), atol=1e-5)
    assert torch.allclose(plain, v_c, atol=1e-6)


def test_motion_guidance_leaves_motionless_prompts_alone() -> None:
    """The negative prompt is the prompt with its motion reversed: for a still or bouncing
    object it is the prompt itself and motion guidance changes nothing; for a moving one it
    pushes."""
    from engine.data.parse import parse_caption
    from engine.text.schema import label_keys, labels, reverse_motion, rows_from_probabilities

    torch.manual_seed(0)
    dit = CausalDiT(training_preset("tiny").dit).eval()
    x = torch.randn(1, 2, 8, 16, 16)
    t = torch.full((1, 2), 800.0)

    def rows(caption: str) -> torch.Tensor:  # one-hot grounded rows [1, 3, W]
        lab = labels(parse_caption(caption))
        return rows_from_probabilities(
            {k: F.one_hot(torch.tensor([max(lab[k], 0)]), len(g.values)).float() for k, g in label_keys()}
        )

    with torch.no_grad():
        for caption, moves in (("a red circle staying still", False), ("a red circle moving left", True)):
            text = rows(caption)
            assert torch.equal(reverse_motion(text), text) is not moves
            cfg_only = guided_flow(dit, x, t, Guidance.of(dit, text, 4.0))
            with_motion = guided_flow(dit, x, t, Guidance.of(dit, text, 4.0, 3.0))
            assert torch.allclose(cfg_only, with_motion, atol=1e-5) is not moves, caption


def test_ode_stage_loss_decreases() -> None:
    torch.manual_seed(0)
    dit = CausalDiT(CFG.dit)
    schedule = FlowMatchSchedule(CFG.sampler)
    states = torch.randn(2, schedule.num_steps, 6, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    x0 = 0.5 * states[:, 0] + 0.1
    text = text_batch(2)
    opt = torch.optim.Adam(dit.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        losses.append(float(ode_loss(dit, schedule, CFG, states, x0, text, np.random.default_rng(0))))
        opt.step()
    assert decreased(losses, 0.7), losses


def test_a_prefix_is_context_the_sampler_leaves_alone() -> None:
    """euler_sample with a clean prefix: the model sees the prefix as it is at timestep 0 in
    every call, the prefix comes back unchanged, and the rest is integrated from the noise; a
    causal teacher trajectory is chunk 0 of a joint sample, then chunk 1 sampled again from
    the same noise with chunk 0 as its prefix."""
    torch.manual_seed(0)
    dit = CausalDiT(CFG.dit).eval()
    f = CFG.sampler.frames_per_chunk
    noise = torch.randn(2, 2 * f, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    prefix = torch.randn(2, f, CFG.dit.in_dim, CFG.latent_height, CFG.latent_width)
    guide = Guidance.of(dit, text_batch(2), 3.0)
    seen = Inputs(dit)
    out, _ = euler_sample(dit, noise, guide, steps=4, shift=2.0, prefix=prefix)
    assert len(seen.calls) == 4
    for x, t in seen.calls:
        assert torch.equal(x[:2, :f], prefix) and torch.all(t[:, :f] == 0)
        assert torch.all(t[:, f:] > 0)
    assert torch.equal(out[:, :f], prefix) and not torch.allclose(out[:, f:], noise[:, f:])
    seen.handle.remove()

    sigmas = [1.0, 0.5]
    joint, _ = euler_sample(dit, noise, guide, steps=4, shift=1.0)
    x0, states = teacher_trajectory(dit, noise, guide, steps=4, shift=1.0, sigmas=sigmas, chunk=f)
    again, kept = euler_sample(
        dit, noise, guide, steps=4, shift=1.0, keep_sigmas=(1.0, 0.5), prefix=joint[:, :f]
    )
    assert torch.allclose(x0[:, :f], joint[:, :f]) and torch.allclose(x0[:, f:], again[:, f:])
    assert not torch.allclose(x0[:, f:], joint[:, f:], atol=1e-4)  # the context changed chunk 1
    assert states.shape == (2, 2, 2 * f, *noise.shape[2:])
    assert torch.equal(states[:, 0, :f], noise[:, :f]) and torch.allclose(states[:, 1, f:], kept[0.5][:, f:])
