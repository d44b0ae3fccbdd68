"""Stage `vae`: train the tiny streaming VAE on clips of the synthetic world.

Loss per clip (pixels in [-1, 1]): L1 + `l2_weight` * MSE + `grad_weight` * L1 of the spatial
finite differences (keeps object edges and background textures crisp without a perceptual
network) + `time_weight` * L1 of the temporal finite differences + `kl_weight` *
KL(posterior || N(0, 1)) averaged per latent element (a small KL keeps the latent smooth and
bounded; the decoder is trained on posterior samples, so it tolerates the small latent errors a
diffusion model makes).

The temporal term matters: one latent frame codes 4 pixel frames, and with per-frame losses
alone the decoder settles on the L1-optimal shortcut of drawing a moving object at its mean
position in all 4 frames (a video that stands still and jumps every 4th frame, which the
evaluator's frozen-frame alarm flags). Matching frame-to-frame differences makes that shortcut
expensive; with the per-pixel-frame decoder the shipped VAE's frame-to-frame steps are 0.15 of
the source's -- better than the earlier decoder's, still far from 1 (docs/models.md, "The
shipped run").

After training, the per-channel mean and std of the posterior means over `stats_clips` clips are
measured and stored in the VAE's `latent_mean` / `latent_std` buffers (the diffusion model works
on (z - mean) / std), and `vae.safetensors` plus a reconstruction grid `recon.png` are written.

Decoder training on a kept latent space (`init` = trained VAE weights, `train_encoder = false`):
the encoder and the latent statistics stay as they are, so the latent space -- and every
diffusion model trained on it -- stays valid while the decoder learns to draw better from the
same latents; `init_decoder = false` starts that decoder fresh (a new decoder architecture).

The tiny VAE is trained in two runs of this stage. The shipped per-pixel-frame decoder costs
~1.3 s per step (batch 4, 8 frames, 2 cores), the cheap `SharedDecoder` ~0.85 s, and the encoder
learns only as fast as the decoder it is trained with. So: (1) `decoder = "shared"` trains the
encoder; (2) `init` = those weights, `train_encoder = false`, `init_decoder = false` trains the
shipped decoder on the frozen encoder (docs/models.md, "Retraining from scratch").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.data.tensors import to_model_input
from engine.loader import load_into
from engine.train.clips import ClipConfig, clip_batch, sample_clip
from engine.train.config import RunConfig
from engine.train.evaluate import roundtrip_fidelity
from engine.train.images import save_grid
from engine.train.models import init_file, training_preset
from engine.train.run import StageRun, clipped_step, save_safetensors
from engine.vae.loading import read_state_dict
from engine.vae.tiny import TinyVAE, TinyVAEConfig


@dataclass(frozen=True)
class VAEStageConfig(RunConfig):
    lr: float = 6e-4
    # bf16 autocast where the CPU has native bf16: a VAE step 2.5x faster there, 24x slower
    # where bf16 is emulated, so `train_autocast` leaves it off on such CPUs (bench.precision)
    max_steps: int = 12_000
    warmup_steps: int = 200
    frames: int = 8  # pixel frames per training clip (a multiple of 4)
    l2_weight: float = 1.0
    grad_weight: float = 0.5
    time_weight: float = 2.0
    kl_weight: float = 1e-4
    stats_clips: int = 64
    eval_prompts: int = 16  # held-out prompts whose own video is round-tripped and scored
    two_object_prob: float = 0.3
    # False: fine-tune the decoder only (with `init`): the latent space -- and every diffusion
    # model trained on it -- stays valid, and the stored latent mean/std are kept
    train_encoder: bool = True
    # with `init`: start the decoder from it too; False: a fresh decoder (a new decoder
    # architecture trained on the kept encoder, latent statistics and so latent space)
    init_decoder: bool = True
    # the decoder trained here ("": the preset's; "shared": the ~4x cheaper `SharedDecoder` the
    # encoder is trained with, before the preset's decoder is trained on the frozen encoder)
    decoder: str = ""

    def __post_init__(self) -> None:
        if not self.train_encoder and not self.init:
            raise ValueError("train_encoder = false fine-tunes the decoder of trained weights: set init")


CONFIG = VAEStageConfig


def _spatial_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def vae_losses(vae: TinyVAE, video: torch.Tensor, cfg: VAEStageConfig) -> dict[str, torch.Tensor]:
    """video [B, 3, T, H, W] -> loss terms (and their weighted sum under "loss")."""
    recon, mu, log_var = (t.float() for t in vae(video))  # losses in fp32 under autocast
    l1 = (recon - video).abs().mean()
    l2 = F.mse_loss(recon, video)
    (ry, rx), (vy, vx) = _spatial_grad(recon), _spatial_grad(video)
    grad = 0.5 * ((ry - vy).abs().mean() + (rx - vx).abs().mean())
    time = ((recon[:, :, 1:] - recon[:, :, :-1]) - (video[:, :, 1:] - video[:, :, :-1])).abs().mean()
    log_var = log_var.clamp(-30.0, 20.0)  # as in the posterior sample: exp() never overflows
    kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).mean()
    loss = l1 + cfg.l2_weight * l2 + cfg.grad_weight * grad + cfg.time_weight * time + cfg.kl_weight * kl
    return {"loss": loss, "l1": l1, "l2": l2, "grad": grad, "time": time, "kl": kl}


@torch.no_grad()
def measure_latent_stats(
    vae: TinyVAE, clips: ClipConfig, n: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of posterior means (VAE space) over `n` clips."""
    total = torch.zeros(vae.config.z_dim, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for _ in range(n):
        video = to_model_input(sample_clip(rng, clips).frames)[None]
        mu, _ = vae.encode(video)
        flat = mu.transpose(0, 1).reshape(mu.shape[1], -1).double()
        total += flat.sum(1)
        total_sq += flat.pow(2).sum(1)
        count += flat.shape[1]
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def train(
    cfg: VAEStageConfig, out_dir: Path, preset: str = "tiny", resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    gen_cfg = training_preset(preset)
    assert isinstance(gen_cfg.vae, TinyVAEConfig)
    run = StageRun("vae", out_dir, cfg, resume=resume, quiet=quiet)
    clips = ClipConfig(
        width=gen_cfg.width,
        height=gen_cfg.height,
        fps=gen_cfg.fps,
        frames=cfg.frames,
        two_object_prob=cfg.two_object_prob,
    )
    vae = TinyVAE(dataclasses.replace(gen_cfg.vae, decoder=cfg.decoder) if cfg.decoder else gen_cfg.vae)
    if cfg.init:
        state = read_state_dict(init_file(cfg.init))
        if not cfg.init_decoder:  # a fresh decoder (e.g. a new architecture) on the kept encoder
            state = {k: v for k, v in state.items() if not k.startswith("decoder.")}
        load_into(vae, state, optional=() if cfg.init_decoder else ("decoder.",), source=cfg.init)
    vae.encoder.requires_grad_(cfg.train_encoder)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    run.restore({"vae": vae}, {"opt": opt})
    vae.train()
    while not run.done:
        video = to_model_input(np.stack([c.frames for c in clip_batch(run.rng, clips, cfg.batch_size)]))
        lr = run.lr()
        run.set_lr(opt, lr)
        with run.autocast():
            losses = vae_losses(vae, video, cfg)
        clipped_step(opt, losses["loss"], vae, cfg.grad_clip)  # frozen parameters have no gradient
        run.record(**{k: v.item() for k, v in losses.items()}, lr=lr)
        run.maybe_save({"vae": vae}, {"opt": opt})
    run.save({"vae": vae}, {"opt": opt})
    vae.eval()
    if cfg.train_encoder:
        stats_rng = np.random.default_rng(cfg.seed + 1)
        mean, std = measure_latent_stats(vae, clips, cfg.stats_clips, stats_rng)
        vae.latent_mean.copy_(mean)
        vae.latent_std.copy_(std)
    save_safetensors(vae, run.dir / "vae.safetensors")
    quality = _write_samples(vae, clips, run.dir / "recon.png", np.random.default_rng(cfg.seed + 2))
    roundtrip = roundtrip_fidelity(vae, cfg.eval_prompts, gen_cfg.fps, cfg.seed)
    run.close()
    summary = {
        "stage": "vae",
        "steps": run.step,
        "minutes": run.elapsed / 60,
        **quality,
        "roundtrip_eval": roundtrip,
        "latent_mean": vae.latent_mean.tolist(),
        "latent_std": vae.latent_std.tolist(),
        "last": run.log.read()[-1:],
    }
    run.note(
        f"[vae] done: {run.step} steps in {run.elapsed / 60:.1f} min, reconstruction PSNR "
        f"{quality['psnr_db']:.2f} dB, step ratio {quality['step_ratio']:.2f} (source "
        f"{quality['source_step_ratio']:.2f}); round trips of held-out prompts' video score "
        f"{roundtrip['overall']:.3f}"
    )
    return summary


def step_ratio(frames: np.ndarray, frames_per_latent: int) -> float:
    """Mean frame-to-frame change inside latent frames over the change across their boundaries,
    for uint8 frames [T, H, W, 3]. Source video moves evenly (~1); a decoder that draws the frames
    of a latent frame alike and jumps at its boundaries (stutter) scores near 0."""
    change = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))  # [T - 1]
    across = (np.arange(change.size) % frames_per_latent) == frames_per_latent - 1
    return float(change[~across].mean() / max(change[across].mean(), 1e-6))


@torch.no_grad()
def _write_samples(
    vae: TinyVAE, clips: ClipConfig, path: Path, rng: np.random.Generator, n: int = 8
) -> dict[str, float]:
    """Originals and reconstructions (decoded chunk by chunk, as a stream) -> PNG (4 of them);
    returns PSNR and the step ratio of reconstructions and sources (`step_ratio`)."""
    from engine.data.tensors import from_model_output
    from engine.vae.streaming import StreamingDecoder

    rows, errs, steps, source_steps = [], [], [], []
    s = vae.config.frames_per_latent
    for i in range(n):
        frames = sample_clip(rng, ClipConfig(**{**clips.__dict__, "frames": 16})).frames
        z = vae.encode_latent(to_model_input(frames)[None])
        dec = StreamingDecoder(vae, frames_per_pass=None)
        pixels = torch.cat([dec.decode(z[:, :, j : j + 1]) for j in range(z.shape[2])], dim=2)
        recon = from_model_output(pixels[0])
        errs.append(np.mean((recon.astype(np.float64) - frames) ** 2))
        steps.append(step_ratio(recon, s))
        source_steps.append(step_ratio(frames, s))
        if i < 4:
            rows += [frames, recon]
    save_grid(rows, path, every=2)
    return {
        "psnr_db": float(10 * np.log10(255.0**2 / max(np.mean(errs), 1e-12))),
        "step_ratio": float(np.mean(steps)),
        "source_step_ratio": float(np.mean(source_steps)),
    }
