"""Few-step flow-matching sampler of Self Forcing.

Schedule (the reference's FlowMatchScheduler with shift s, sigma_max 1, sigma_min 0,
extra_one_step, 1000 train steps):
    u_i = linspace(1, 0, 1001)[:-1][i]       (float32)
    sigma_i = s * u_i / (1 + (s - 1) * u_i)
    t_i = 1000 * sigma_i
The denoising list 1000/750/500/250 is "warped" to t[1000 - step] = t_0, t_250, t_500, t_750
(1000, 937.5, 833.33, 625 for s = 5), fed to the model as float32, not rounded.

One chunk: x = noise; for each step k: flow = model(x, t_k); x0 = x - sigma(t_k) * flow (in
float64); if not last: x = (1 - sigma_{k+1}) * x0 + sigma_{k+1} * eps_k with fresh Gaussian
eps_k. The caller then runs one more pass on the final x0 at the context-noise timestep (0) to
write the chunk's clean K/V into the cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.config import SamplerConfig

FlowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B,F,C,H,W], t [B,F]) -> flow
NoiseFn = Callable[[int, torch.Size], torch.Tensor]  # (step index, shape) -> eps


class FlowMatchSchedule:
    """Timestep/sigma tables and the conversions between flow, x0 and noisy samples."""

    def __init__(self, cfg: SamplerConfig) -> None:
        self.cfg = cfg
        n = cfg.num_train_timesteps
        u = torch.linspace(1.0, 0.0, n + 1)[:-1]
        self.sigmas = cfg.shift * u / (1 + (cfg.shift - 1) * u)  # [n] float32
        self.timesteps = self.sigmas * n  # [n] float32
        steps = torch.tensor(cfg.denoising_steps, dtype=torch.long)
        if cfg.warp_denoising_steps:
            table = torch.cat([self.timesteps, torch.zeros(1)])
            self.step_timesteps = table[n - steps]
        else:
            self.step_timesteps = steps.to(torch.float32)
        self.step_sigmas = self.sigma(self.step_timesteps)

    @property
    def num_steps(self) -> int:
        return len(self.cfg.denoising_steps)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma of the nearest table timestep (float32), elementwise over t."""
        flat = t.reshape(-1).to(self.timesteps.device, torch.float32)
        index = torch.argmin((self.timesteps.unsqueeze(0) - flat.unsqueeze(1)).abs(), dim=1)
        return self.sigmas[index].reshape(t.shape)

    def to_x0(self, flow: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 = x_t - sigma(t) * flow in float64; flow/x_t [B, F, ...], t [B, F]."""
        sigma = (
            self.sigma(t).to(flow.device, torch.float64).reshape(*t.shape, *([1] * (flow.dim() - t.dim())))
        )
        return (x_t.double() - sigma * flow.double()).to(flow.dtype)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """(1 - sigma) * x0 + sigma * eps with sigma a float32 scalar tensor; keeps eps's dtype."""
        sigma = sigma.to(x0.device)
        return ((1 - sigma) * x0 + sigma * eps).type_as(eps)

    def denoise(self, noise: torch.Tensor, flow_fn: FlowFn, noise_fn: NoiseFn) -> torch.Tensor:
        """Run all steps on one chunk; noise [B, F, C, H, W] -> final x0 (same shape)."""
        b, frames = noise.shape[:2]
        x = noise
        x0 = noise
        for k in range(self.num_steps):
            t = self.step_timesteps[k].expand(b, frames).to(noise.device)
            x0 = self.to_x0(flow_fn(x, t), x, t)
            if k + 1 < self.num_steps:
                x = self.add_noise(x0, noise_fn(k, x0.shape).to(x0), self.step_sigmas[k + 1])
        return x0

    def context_timestep(self, batch: int, frames: int, device: torch.device) -> torch.Tensor:
        """[B, F] timesteps of the cache-refresh pass."""
        return torch.full((batch, frames), float(self.cfg.context_noise), device=device)
