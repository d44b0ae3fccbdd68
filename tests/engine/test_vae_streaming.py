"""Streaming VAE decode: chunk splits, cache snapshot/restore, bounded memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.vae import StreamingDecoder, VAEConfig, WanVAE
from engine.vae.golden import relative_error


def random_vae(seed: int, **overrides: object) -> WanVAE:
    """A VAE whose every parameter is random (incl. attention proj and norm gains)."""
    fields: dict[str, object] = {"dim": 6, "num_res_blocks": 1}
    fields.update(overrides)
    torch.manual_seed(seed)
    vae = WanVAE(VAEConfig(**fields)).eval()  # type: ignore[arg-type]
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.ndim == 1:
                p.normal_(0.0, 0.05)
            else:
                p.normal_(0.0, 1.0 / (p[0].numel() ** 0.5))
    return vae


@pytest.fixture(scope="module")
def vae() -> WanVAE:
    return random_vae(0)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 16, 6, 2, 2)  # [B, z, T, h, w], batch of two streams


@pytest.fixture(scope="module")
def whole(vae: WanVAE, clip: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vae.decode(clip, clamp=False)


def decode_split(decoder: StreamingDecoder, clip: torch.Tensor, split: tuple[int, ...]) -> list[torch.Tensor]:
    outs, start = [], 0
    for n in split:
        outs.append(decoder.decode(clip[:, :, start : start + n]))
        start += n
    assert start == clip.shape[2]
    return outs


@pytest.mark.parametrize("split", [(3, 3), (1, 2, 3), (6,), (2, 1, 1, 2)])
def test_any_split_equals_whole_decode(
    vae: WanVAE, clip: torch.Tensor, whole: torch.Tensor, split: tuple[int, ...]
) -> None:
    assert whole.shape == (2, 3, 21, 16, 16)
    decoder = StreamingDecoder(vae, clamp=False)
    outs = decode_split(decoder, clip, split)
    # First chunk: 1 + 4 (t - 1) pixel frames; later chunks: 4 t.
    assert [o.shape[2] for o in outs] == [1 + 4 * (split[0] - 1), *(4 * n for n in split[1:])]
    assert torch.equal(torch.cat(outs, dim=2), whole)
    assert decoder.latent_frames == 6 and decoder.pixel_frames == 21


@pytest.mark.parametrize("split", [(3, 3), (1, 5)])
def test_one_pass_per_chunk_equals_whole_decode_to_rounding(
    vae: WanVAE, clip: torch.Tensor, whole: torch.Tensor, split: tuple[int, ...]
) -> None:
    decoder = StreamingDecoder(vae, clamp=False, frames_per_pass=None)
    out = torch.cat(decode_split(decoder, clip, split), dim=2)
    assert relative_error(out, whole) < 2e-6


def test_clamp_and_other_geometry() -> None:
    # Width 4, three levels, the temporal stage first: latent frame -> 2 pixel frames, stride 4.
    vae = random_vae(5, dim=4, dim_mult=(1, 2, 2), temporal_downsample=(False, True))
    torch.manual_seed(6)
    clip = 3.0 * torch.randn(1, 16, 5, 2, 3)
    with torch.no_grad():
        whole = vae.decode(clip)
    assert whole.shape == (1, 3, 9, 8, 12) and whole.abs().max() <= 1.0
    decoder = StreamingDecoder(vae)
    assert decoder.output_frames(2) == 3
    outs = decode_split(decoder, clip, (2, 1, 2))
    assert [o.shape[2] for o in outs] == [3, 2, 4]
    assert torch.equal(torch.cat(outs, dim=2), whole)


def test_state_round_trip_continues_identically(vae: WanVAE, clip: torch.Tensor, tmp_path: Path) -> None:
    first = StreamingDecoder(vae)
    first.decode(clip[:, :, :1])
    snap_rep = first.state()  # upsample3d slots are still empty (frame 0 only) here
    first.decode(clip[:, :, 1:3])
    snap = first.state()
    rest = [first.decode(clip[:, :, 3:5]), first.decode(clip[:, :, 5:6])]

    # Restore into a fresh decoder, through a safetensors file (CPU, serialisable).
    save_file(snap, str(tmp_path / "vae_state.safetensors"))
    second = StreamingDecoder(vae)
    second.load_state(load_file(str(tmp_path / "vae_state.safetensors")))
    assert second.latent_frames == 3
    assert torch.equal(second.decode(clip[:, :, 3:5]), rest[0])
    assert torch.equal(second.decode(clip[:, :, 5:6]), rest[1])

    # The snapshot taken before decoding on is still valid (the decoder never writes into it).
    first.load_state(snap)
    assert torch.equal(first.decode(clip[:, :, 3:6]), torch.cat(rest, dim=2))

    # A snapshot taken right after frame 0 (empty temporal-upsample history) also restores.
    third = StreamingDecoder(vae)
    third.load_state(snap_rep)
    with torch.no_grad():
        expected = vae.decode(clip[:, :, :3], clamp=True)[:, :, 1:]
    assert torch.equal(third.decode(clip[:, :, 1:3]), expected)


def test_reset_starts_a_new_stream(vae: WanVAE, clip: torch.Tensor) -> None:
    decoder = StreamingDecoder(vae)
    a = decoder.decode(clip[:, :, :2])
    decoder.decode(clip[:, :, 2:4])
    decoder.reset()
    assert decoder.latent_frames == 0 and decoder.cache_tensors() == 0
    assert torch.equal(decoder.decode(clip[:, :, :2]), a)


def test_load_state_rejects_foreign_state(vae: WanVAE, clip: torch.Tensor) -> None:
    decoder = StreamingDecoder(vae)
    decoder.decode(clip[:, :, :2])
    state = decoder.state()
    with pytest.raises(ValueError, match="unexpected keys"):
        StreamingDecoder(vae).load_state({**state, "cache/encoder.conv1": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected keys"):  # a layer this VAE does not have
        StreamingDecoder(vae).load_state({**state, "cache/upsamples.40.residual.2": torch.zeros(1)})
    with pytest.raises(ValueError, match="latent_frames"):
        StreamingDecoder(vae).load_state({k: v for k, v in state.items() if k != "latent_frames"})


def test_stream_shape_is_fixed(vae: WanVAE, clip: torch.Tensor) -> None:
    decoder = StreamingDecoder(vae)
    decoder.decode(clip[:, :, :1])
    with pytest.raises(ValueError, match="stream started"):
        decoder.decode(clip[:1, :, 1:2])
    with pytest.raises(ValueError):
        decoder.decode(clip[:, :8, 1:2])  # wrong channel count


def test_memory_stays_bounded(vae: WanVAE) -> None:
    decoder = StreamingDecoder(vae)
    torch.manual_seed(2)
    sizes = []
    for _ in range(8):
        decoder.decode(torch.randn(1, 16, 2, 1, 1))
        sizes.append((decoder.cache_tensors(), decoder.cache_nbytes()))
    assert decoder.latent_frames == 16
    # After the first chunk (whose frame 0 skips the temporal upsamplers' history) nothing grows.
    assert len(set(sizes[1:])) == 1 and sizes[0][1] <= sizes[1][1]
    assert sizes[0][0] == len(vae.decoder.cache_slots)
    assert all(t.shape[2] <= 2 for t in decoder.state().values() if t.ndim == 5)
    # Every slot owns a small storage of its own (no view pinning a whole activation).
    slots = [t for t in decoder.state().values() if t.ndim == 5]
    assert slots and all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in slots)
