"""The tiny preset's light VAE: shapes, exact streaming (any chunk split equals whole-clip
decoding), snapshot round trip, and plugging into sessions through `build_vae`."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.generator import Generator
from engine.presets import get_preset
from engine.vae import StreamingDecoder, TinyVAE, TinyVAEConfig, WanVAE, build_vae
from engine.vae.golden import relative_error

SMALL = TinyVAEConfig(
    z_dim=4,
    encoder_widths=(8, 6, 6),
    encoder_blocks=(1, 1, 0),
    latent_width=8,
    temporal_blocks=2,
    widths=(8, 6, 4),
    blocks=(1, 1, 0),
)


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_tiny_vae(seed: int, decoder: str = "per_frame") -> TinyVAE:
    """Every parameter random (the zero-initialised residual convs included)."""
    torch.manual_seed(seed)
    vae = TinyVAE(dataclasses.replace(SMALL, decoder=decoder)).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0.0, 0.05 if p.ndim == 1 else 1.0 / (p[0].numel() ** 0.5))
        vae.latent_mean.normal_(0.0, 0.3)
        vae.latent_std.uniform_(0.5, 2.0)
    return vae


def test_config_geometry() -> None:
    cfg = TinyVAEConfig()
    assert (cfg.spatial_stride, cfg.temporal_stride) == (8, 4)
    assert [cfg.pixel_frames(n) for n in (0, 1, 3)] == [0, 4, 12]
    assert cfg.latent_frames(12) == 3
    with pytest.raises(ValueError):
        cfg.latent_frames(9)
    with pytest.raises(ValueError):
        TinyVAEConfig(decoder="flow")
    tiny = get_preset("tiny")
    assert isinstance(tiny.vae, TinyVAEConfig) and tiny.vae.z_dim == tiny.dit.in_dim == tiny.dit.out_dim
    assert (tiny.width, tiny.height) == (128, 128)


def test_encode_decode_shapes_and_normalisation_round_trip() -> None:
    vae = random_tiny_vae(0)
    video = torch.rand(2, 3, 8, 16, 24) * 2 - 1
    mu, log_var = vae.encode(video)
    assert mu.shape == log_var.shape == (2, 4, 2, 2, 3)
    z = vae.encode_latent(video)
    torch.testing.assert_close(vae.denormalize_latent(z), mu, rtol=1e-5, atol=1e-5)
    pixels = vae.decode(z)
    assert pixels.shape == (2, 3, 8, 16, 24) and pixels.abs().max() <= 1.0
    with pytest.raises(ValueError):
        vae.encode(torch.zeros(1, 3, 6, 16, 24))


@pytest.mark.parametrize("decoder", ["per_frame", "shared"])
@pytest.mark.parametrize("split", [(3, 3), (1, 2, 3), (6,), (2, 1, 1, 2)])
def test_any_split_equals_whole_decode(split: tuple[int, ...], decoder: str) -> None:
    vae = random_tiny_vae(1, decoder)
    torch.manual_seed(2)
    clip = torch.randn(2, 4, 6, 2, 3)
    with torch.no_grad():
        whole = vae.decode(clip, clamp=False)
    decoder = StreamingDecoder(vae, clamp=False, frames_per_pass=None)
    outs, start = [], 0
    for n in split:
        out = decoder.decode(clip[:, :, start : start + n])
        assert out.shape[2] == 4 * n
        outs.append(out)
        start += n
    assert relative_error(torch.cat(outs, dim=2), whole) < 1e-5
    assert decoder.cache_tensors() == len(vae.decoder.cache_slots) == 2
    # the temporal history matters: decoding the last chunk alone differs
    with torch.no_grad():
        alone = vae.decode(clip[:, :, 3:], clamp=False)
    assert relative_error(alone, whole[:, :, 12:]) > 1e-3


def test_decoder_layouts_agree() -> None:
    """The per-pixel-frame body runs channels-last (the CPU's faster convolutions) by default;
    NCHW gives the same stream to float rounding."""
    vae = random_tiny_vae(5)
    torch.manual_seed(6)
    clip = torch.randn(1, 4, 6, 4, 4)
    layouts: list[bool] = []
    vae.decoder.body.register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    streams = {}
    for fmt in (torch.channels_last, torch.contiguous_format):
        vae.decoder.memory_format = fmt
        decoder = StreamingDecoder(vae, clamp=False, frames_per_pass=None)
        streams[fmt] = torch.cat([decoder.decode(clip[:, :, :3]), decoder.decode(clip[:, :, 3:])], dim=2)
    assert layouts == [True, True, False, False]
    assert relative_error(streams[torch.channels_last], streams[torch.contiguous_format]) < 1e-5
    assert TinyVAE(SMALL).decoder.memory_format == torch.channels_last


def test_snapshot_round_trip_continues_identically() -> None:
    vae = random_tiny_vae(3)
    torch.manual_seed(4)
    clip = torch.randn(1, 4, 6, 2, 3)
    first = StreamingDecoder(vae)
    first.decode(clip[:, :, :3])
    second = StreamingDecoder(vae)
    second.load_state(first.state())
    torch.testing.assert_close(first.decode(clip[:, :, 3:]), second.decode(clip[:, :, 3:]), rtol=0, atol=0)


def test_build_vae_dispatches_on_the_config_type() -> None:
    assert isinstance(build_vae(SMALL), TinyVAE)
    assert isinstance(build_vae(get_preset("test").vae), WanVAE)


def test_sessions_stream_through_the_tiny_vae() -> None:
    """A generator whose preset uses the tiny VAE streams 4 frames per latent frame."""
    tiny_vae = TinyVAEConfig(
        z_dim=16, encoder_widths=(8, 8, 8), encoder_blocks=(1, 0, 0), latent_width=8, widths=(8, 8, 8)
    )
    config = get_preset("test").replace(vae=tiny_vae)
    gen = Generator.from_config(config)
    session = gen.open("a red circle moving left", seed=1)
    chunks = [session.step() for _ in range(3)]
    assert [c.num_frames for c in chunks] == [12, 12, 12]
    assert [c.first_frame for c in chunks] == [0, 12, 24]
    assert chunks[0].frames.shape == (12, 32, 48, 3)
    assert gen.info["frames_per_chunk"] == 12


@pytest.mark.parametrize("decoder", ["per_frame", "shared"])
def test_fresh_decoder_draws_the_frames_of_a_latent_frame_alike(decoder: str) -> None:
    """Tied initialisation (`tie_frame_groups`): training starts from frames that agree inside a
    latent frame, not from unrelated ones; they still differ across latent frames."""
    torch.manual_seed(0)
    vae = TinyVAE(dataclasses.replace(SMALL, decoder=decoder)).eval()
    with torch.no_grad():
        frames = vae.decode(torch.randn(1, 4, 2, 2, 3), clamp=False)  # [1, 3, 8, 16, 24]
    for k in range(1, 4):
        assert torch.equal(frames[:, :, k], frames[:, :, 0])
    assert not torch.equal(frames[:, :, 4], frames[:, :, 0])
