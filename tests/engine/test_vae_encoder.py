"""Wan VAE encoder: causal time compression, pass splitting, the training forward."""

from __future__ import annotations

import pytest
import torch

from engine.vae import VAEConfig, WanVAE
from engine.vae.golden import relative_error


@pytest.fixture(scope="module")
def vae() -> WanVAE:
    torch.manual_seed(0)
    vae = WanVAE(VAEConfig(dim=4, num_res_blocks=1)).eval()
    with torch.no_grad():
        for p in vae.parameters():
            if p.ndim > 1:
                p.normal_(0.0, 1.0 / (p[0].numel() ** 0.5))
    return vae


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_encoder_shapes(vae: WanVAE, frames: int) -> None:
    video = torch.rand(2, 3, frames, 16, 24) * 2 - 1
    with torch.no_grad():
        mu, log_var = vae.encode(video)
    k = (frames - 1) // 4
    assert mu.shape == log_var.shape == (2, 16, 1 + k, 2, 3)
    latent = vae.encode_latent(video)
    assert torch.allclose(
        latent, (mu - vae.latent_mean.view(1, -1, 1, 1, 1)) * vae.latent_inv_std.view(1, -1, 1, 1, 1)
    )
    with torch.no_grad():
        assert vae.decode(latent).shape == video.shape


def test_encoder_is_causal_first_frame_alone(vae: WanVAE) -> None:
    torch.manual_seed(1)
    video = torch.randn(1, 3, 9, 16, 16)
    changed = video.clone()
    changed[:, :, 5:] += 1.0  # only the last group of 4 frames
    with torch.no_grad():
        a, _ = vae.encode(video)
        b, _ = vae.encode(changed)
        first, _ = vae.encode(video[:, :, :1])
    assert torch.equal(a[:, :, :2], b[:, :, :2]) and not torch.allclose(a[:, :, 2], b[:, :, 2])
    assert relative_error(first, a[:, :, :1]) < 1e-6


def test_pass_splitting_does_not_change_the_result(vae: WanVAE) -> None:
    torch.manual_seed(2)
    video = torch.randn(1, 3, 13, 16, 16)
    with torch.no_grad():
        whole, _ = vae.encode(video)
        by4, _ = vae.encode(video, pass_frames=4)  # the reference's 1, 4, 4, ... loop
        by8, _ = vae.encode(video, pass_frames=8)
    assert relative_error(by4, whole) < 2e-6 and relative_error(by8, whole) < 2e-6


def test_encoder_rejects_bad_clips(vae: WanVAE) -> None:
    with pytest.raises(ValueError, match="1 \\+ 4"):
        vae.encode(torch.zeros(1, 3, 4, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 5, 12, 16))
    with pytest.raises(ValueError, match="pass_frames"):
        vae.encode(torch.zeros(1, 3, 5, 16, 16), pass_frames=3)


def test_training_forward_backpropagates(vae: WanVAE) -> None:
    torch.manual_seed(3)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    gen = torch.Generator().manual_seed(4)
    recon, mu, log_var = vae(video, generator=gen)
    assert recon.shape == video.shape and mu.shape == log_var.shape == (1, 16, 2, 2, 2)
    loss = (recon - video).pow(2).mean() + 1e-3 * (mu.pow(2) + log_var.exp() - log_var).mean()
    loss.backward()
    grads = {n: p.grad for n, p in vae.named_parameters()}
    assert grads["encoder.conv1.weight"] is not None and grads["encoder.conv1.weight"].abs().sum() > 0
    time_convs = [g for n, g in grads.items() if "time_conv" in n and n.startswith("decoder.")]
    assert time_convs and all(g is not None and g.abs().sum() > 0 for g in time_convs)
    vae.zero_grad(set_to_none=True)
