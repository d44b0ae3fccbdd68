"""Model configurations used for training, and helpers to build and load stage outputs.

`training_preset("tiny")` is the shipped preset. `training_preset("test")` is the micro `test`
preset with a micro tiny VAE instead of its Wan VAE (the `test` generator preset keeps the Wan
VAE for the engine's own tests), so every stage can run a few steps in seconds in unit tests.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.config import GeneratorConfig
from engine.model.dit import CausalDiT
from engine.presets import get_preset
from engine.text import build_text_encoder
from engine.text.base import CachedTextEncoder
from engine.vae.factory import load_vae_weights
from engine.vae.tiny import TinyVAE, TinyVAEConfig

TEST_VAE = TinyVAEConfig(
    z_dim=16,
    encoder_widths=(8, 8, 8),
    encoder_blocks=(1, 0, 0),
    latent_width=8,
    temporal_blocks=1,
    widths=(8, 8, 8),
    blocks=(1, 0, 0),
)


def training_preset(name: str) -> GeneratorConfig:
    config = get_preset(name)
    if name == "test":
        config = config.replace(vae=TEST_VAE)
    if not isinstance(config.vae, TinyVAEConfig):
        raise ValueError(f"preset {name!r} does not use the tiny VAE; training supports 'tiny' and 'test'")
    if config.vae.z_dim != config.dit.in_dim or config.dit.in_dim != config.dit.out_dim:
        raise ValueError("the DiT's in_dim/out_dim must equal the VAE's z_dim")
    return config


def load_vae(config: GeneratorConfig, path: Path) -> TinyVAE:
    """The trained VAE of a run (eval mode, frozen)."""
    assert isinstance(config.vae, TinyVAEConfig)
    vae = TinyVAE(config.vae)
    load_vae_weights(path, vae)
    return vae.eval().requires_grad_(False)


def load_dit(config: GeneratorConfig, path: Path) -> CausalDiT:
    from engine.loader import load_into, read_checkpoint

    dit = CausalDiT(config.dit)
    load_into(dit, read_checkpoint(path), optional=("gate_compress",), source=str(path))
    return dit


def init_file(init: str) -> Path:
    """A stage's `init` weights file (checked to exist)."""
    path = Path(init)
    if not path.is_file():
        raise FileNotFoundError(f"init weights {path} not found")
    return path


def stage_file(out_dir: str | Path, stage: str, name: str) -> Path:
    """Path of a finished stage's output; raises with the command to run when it is missing."""
    path = Path(out_dir) / stage / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `rollcast train {stage} --out {out_dir}` first")
    return path


def run_text_encoder(config: GeneratorConfig, out_dir: str | Path) -> CachedTextEncoder:
    """The prompt encoder a run's stages use: for a grounded preset (tiny), the grounding head
    trained by the run's own `text` stage; otherwise the preset's encoder as it is."""
    if config.text.kind == "grounded":
        config = config.replace(text={"path": str(stage_file(out_dir, "text", "text.safetensors"))})
    return build_text_encoder(config)


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    return module.eval().requires_grad_(False)
