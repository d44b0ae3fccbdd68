"""The world's own clip for a prompt, through the tiny VAE: the reference the motion benches
compare the models' samples with."""

from __future__ import annotations

import numpy as np
import torch

from engine.data.render import RenderConfig, make_scene, render_scene
from engine.data.tensors import to_model_input
from engine.data.world import SceneSpec
from engine.vae.base import LatentVideoVAE


@torch.no_grad()
def encode_world_clip(
    vae: LatentVideoVAE, spec: SceneSpec, rng: np.random.Generator, render: RenderConfig, clip: bool
) -> torch.Tensor:
    """Render one scene for `spec` (`clip`: obey the clip rules, see engine/data/layout.py) and
    encode it: [1, C, F, h, w] latents."""
    frames = render_scene(make_scene(spec, rng, render, clip=clip), render)  # [T, H, W, 3] uint8
    return vae.encode_latent(to_model_input(frames)[None])
