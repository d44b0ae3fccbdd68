"""Check our VAE against the VAE section of a golden reference file (shared/reference/).

The file holds `vae_state_dict/<key>` (Wan2.1_VAE.pth keys), `vae/latent` [B, z, T, h, w]
(diffusion space), `vae/mean`, `vae/std`, and the reference's outputs: `vae/out_full`
(whole-clip decode, clamped), `vae/out_full_raw` (not clamped) and `vae/out_stream/{i}`
(latent frame i decoded alone with the cache carried from frame i-1). The JSON's `vae` section
gives the `WanVAE_` kwargs. `vae/out_stream_demo/*` comes from a different decoder (zero
initial cache) that does not equal the full decode; it is deliberately not checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from engine.vae.config import VAEConfig
from engine.vae.loading import load_wan_vae_state_dict
from engine.vae.model import WanVAE
from engine.vae.streaming import StreamingDecoder

CONFIG_KEY = "config (WanVAE_ kwargs)"
STATE_PREFIX = "vae_state_dict/"
_STREAM_KEY = re.compile(r"^vae/out_stream/(\d+)$")


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max|ours - ref| / max|ref| (absolute error when ref is all zeros); inf on shape mismatch."""
    if tuple(ours.shape) != tuple(ref.shape):
        return float("inf")
    ours = ours.detach().double().cpu()
    ref = ref.detach().double().cpu()
    err = (ours - ref).abs().max().item()
    scale = ref.abs().max().item()
    return err / scale if scale > 0 else err


def build_golden_vae(tensors: Mapping[str, torch.Tensor], vae_json: Mapping[str, Any]) -> WanVAE:
    """The VAE described by the JSON `vae` section, with the file's weights and latent stats."""
    section = vae_json.get("vae", vae_json) if CONFIG_KEY not in vae_json else vae_json
    if CONFIG_KEY not in section:
        raise KeyError(f"VAE section has no {CONFIG_KEY!r} entry")
    overrides: dict[str, Any] = {}
    if "vae/mean" in tensors:
        overrides["mean"] = tensors["vae/mean"].double().tolist()
    if "vae/std" in tensors:
        overrides["std"] = tensors["vae/std"].double().tolist()
    config = VAEConfig.from_wan_kwargs(section[CONFIG_KEY], **overrides)
    vae = load_wan_vae_state_dict(tensors, WanVAE(config), prefix=STATE_PREFIX)
    return vae.float().eval()


@torch.no_grad()
def check_vae_section(tensors: dict[str, torch.Tensor], vae_json: dict) -> dict[str, float]:
    """Relative error of our decode for every `vae/out_full`, `vae/out_full_raw` and
    `vae/out_stream/{i}` present in `tensors`, keyed by that tensor name.

    `vae_json` is the file's `vae` section (the whole JSON is accepted too). Runs in float32 on
    the device of `vae/latent`.
    """
    vae = build_golden_vae(tensors, vae_json)
    latent = tensors["vae/latent"].float()
    vae = vae.to(latent.device)
    results: dict[str, float] = {}
    if "vae/out_full" in tensors or "vae/out_full_raw" in tensors:
        raw = vae.decode(latent, clamp=False)  # the clamp is the last op, so clamp(raw) is exact
        if "vae/out_full" in tensors:
            results["vae/out_full"] = relative_error(raw.clamp(-1.0, 1.0), tensors["vae/out_full"])
        if "vae/out_full_raw" in tensors:
            results["vae/out_full_raw"] = relative_error(raw, tensors["vae/out_full_raw"])
    stream_keys = sorted(
        (int(m.group(1)), key) for key in tensors if (m := _STREAM_KEY.match(key)) is not None
    )
    if stream_keys:
        decoder = StreamingDecoder(vae, clamp=True, frames_per_pass=1)
        for i, key in stream_keys:
            if i >= latent.shape[2]:
                results[key] = float("inf")
                continue
            while decoder.latent_frames < i:  # frames without a stored output still feed the cache
                decoder.decode(latent[:, :, decoder.latent_frames : decoder.latent_frames + 1])
            results[key] = relative_error(decoder.decode(latent[:, :, i : i + 1]), tensors[key])
    return results
