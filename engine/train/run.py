"""The bookkeeping every stage shares: wall-clock budget, LR schedule, progress bar, JSONL loss
log and checkpoints with resume.

Budget. A stage stops at `max_steps` or after `max_minutes` of wall-clock time, whichever comes
first, and its learning-rate schedule runs on *progress* = max(step / max_steps, elapsed /
budget): on a busy machine the cosine decay still completes inside the budget (fewer steps, same
shape), so a stage always ends annealed and within its hour.

Resume. `checkpoint.pt` (written atomically every `checkpoint_minutes` and at the end) holds the
models, optimisers, step, elapsed time, the numpy and torch random states and stage extras; with
`resume=True` a stage continues from it and truncates the loss log to the checkpoint's step.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.train.config import RunConfig, to_dict

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def save_safetensors(
    module: nn.Module | Mapping[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None
) -> None:
    """Write a state dict as safetensors (contiguous copies, optionally cast to `dtype`)."""
    from safetensors.torch import save_file

    state = module.state_dict() if isinstance(module, nn.Module) else module
    tensors = {
        k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()).contiguous()
        for k, v in state.items()
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


class MetricsLog:
    """Append-only JSONL of per-step metrics (one object per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = [
            line
            for line in self.path.read_text().splitlines()
            if line and json.loads(line).get("step", 0) <= step
        ]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Elsewhere bf16 is emulated:
    a tiny DiT training step 9-14x slower than fp32, a VAE step 24x (`python -m bench.precision`)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def clipped_step(opt: torch.optim.Optimizer, loss: torch.Tensor, model: nn.Module, clip: float) -> None:
    """Backward `loss`, clip `model`'s gradient norm to `clip`, and step `opt` -- unless the norm
    is not finite: a rare overflow skips its step instead of poisoning the weights."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)):
        opt.step()


def train_autocast(enabled: bool) -> torch.autocast:
    """bf16 autocast for training forward passes if `enabled` and the CPU has native bf16."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled and native_bf16())


class StageRun:
    """One stage's run directory, clock, schedule, log and checkpoints."""

    def __init__(
        self, stage: str, out_dir: str | Path, cfg: RunConfig, *, resume: bool = False, quiet: bool = False
    ) -> None:
        self.stage = stage
        self.cfg = cfg
        self.dir = Path(out_dir) / stage
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = MetricsLog(self.dir / METRICS)
        self.resume = resume
        self.quiet = quiet
        self.step = 0
        self._elapsed_before = 0.0
        self._start = time.monotonic()
        self._last_ckpt = self._start
        self._bar: Any = None
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, zlib.crc32(stage.encode())]))
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        if not resume:
            if self.log.path.exists():
                self.log.path.unlink()
            (self.dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")

    # -- clock and schedule ------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Seconds spent in this stage, across resumes."""
        return self._elapsed_before + time.monotonic() - self._start

    @property
    def progress(self) -> float:
        budget = self.cfg.max_minutes * 60.0
        return min(
            1.0, max(self.step / max(1, self.cfg.max_steps), self.elapsed / budget if budget > 0 else 1.0)
        )

    @property
    def done(self) -> bool:
        return self.step >= self.cfg.max_steps or self.elapsed >= self.cfg.max_minutes * 60.0

    def lr(self, base: float | None = None) -> float:
        """Linear warmup over `warmup_steps`, then cosine from `base` to `base * lr_min_ratio`."""
        base = self.cfg.lr if base is None else base
        if self.step < self.cfg.warmup_steps:
            return base * (self.step + 1) / self.cfg.warmup_steps
        floor = base * self.cfg.lr_min_ratio
        return floor + 0.5 * (base - floor) * (1.0 + math.cos(math.pi * self.progress))

    def autocast(self) -> torch.autocast:
        """The stage's mixed-precision context for training forward passes (bf16 on CPU)."""
        return train_autocast(self.cfg.mixed_precision)

    @staticmethod
    def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
        """Every parameter group at `lr`, times the group's own "lr_scale" where it has one."""
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    # -- progress and logging ----------------------------------------------------------------

    def bar(self) -> Any:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.cfg.max_steps,
                initial=self.step,
                desc=self.stage,
                disable=self.quiet,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.05,
            )
        return self._bar

    def record(self, **metrics: float) -> None:
        """Advance one step; every `log_every` steps append metrics to the log and the bar."""
        self.step += 1
        bar = self.bar()
        bar.update(1)
        if self.step % self.cfg.log_every == 0 or self.step == 1:
            rec = {
                "step": self.step,
                "elapsed_s": round(self.elapsed, 2),
                **{k: float(v) for k, v in metrics.items()},
            }
            self.log.write(rec)
            shown = {k: f"{v:.4g}" for k, v in metrics.items() if k in ("loss", "lr") or k.startswith("loss")}
            shown["min"] = f"{self.elapsed / 60:.1f}/{self.cfg.max_minutes:g}"
            bar.set_postfix(shown, refresh=False)

    def note(self, message: str) -> None:
        """A line of text on stderr that does not break the progress bar."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- checkpoints -------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / CHECKPOINT

    def save(
        self,
        models: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        extra: dict[str, Any] | None = None,
    ) -> None:
        state = {
            "stage": self.stage,
            "step": self.step,
            "elapsed_s": self.elapsed,
            "models": {k: m.state_dict() for k, m in models.items()},
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "extra": extra or {},
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)
        self._last_ckpt = time.monotonic()

    def maybe_save(
        self,
        models: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        extra: dict[str, Any] | None = None,
    ) -> bool:
        if time.monotonic() - self._last_ckpt >= self.cfg.checkpoint_minutes * 60.0:
            self.save(models, optimizers, extra)
            return True
        return False

    def restore(
        self, models: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer]
    ) -> dict[str, Any] | None:
        """Load the checkpoint if resuming and one exists; returns its extras (None if fresh)."""
        if not self.resume or not self.checkpoint_path.exists():
            return None
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        for k, m in models.items():
            m.load_state_dict(state["models"][k])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.step = int(state["step"])
        self._elapsed_before = float(state["elapsed_s"])
        self._start = time.monotonic()
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.log.truncate_after(self.step)
        self.note(f"[{self.stage}] resumed at step {self.step} ({self._elapsed_before / 60:.1f} min done)")
        return dict(state["extra"])
