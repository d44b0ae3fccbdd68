"""`rollcast train export`: install a finished run's weights as a preset's shipped weights.

Writes `dit.safetensors` (the Self Forcing student's EMA weights) and `vae.safetensors` into
engine/weights/<preset>/ (or `dest`). Weights are stored in fp16 to keep the package small
(loading casts them back to the model's dtype); the VAE's latent statistics stay fp32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engine.loader import read_checkpoint
from engine.train.models import stage_file
from engine.train.run import save_safetensors
from engine.vae.loading import read_state_dict

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
KEEP_FP32 = ("latent_mean", "latent_std")


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        k: v.to(torch.float16) if v.is_floating_point() and not k.endswith(KEEP_FP32) else v
        for k, v in state.items()
    }


def export_weights(
    out_dir: str | Path, preset: str = "tiny", dest: str | Path | None = None
) -> dict[str, Path]:
    target = Path(dest) if dest is not None else WEIGHTS_DIR / preset
    target.mkdir(parents=True, exist_ok=True)
    dit = read_checkpoint(stage_file(out_dir, "self-forcing", "student.safetensors"))
    vae = read_state_dict(stage_file(out_dir, "vae", "vae.safetensors"))
    written = {"dit": target / "dit.safetensors", "vae": target / "vae.safetensors"}
    save_safetensors(_half(dit), written["dit"])
    save_safetensors(_half(vae), written["vae"])
    manifest: dict[str, Any] = {"preset": preset, "stages": _stage_summary(Path(out_dir))}
    written["manifest"] = target / "manifest.json"
    if any(s.get("init") for s in manifest["stages"].values()) and written["manifest"].exists():
        # stages continued from earlier weights: keep the history of what they started from
        manifest["continued_from"] = json.loads(written["manifest"].read_text())
    written["manifest"].write_text(json.dumps(manifest, indent=2) + "\n")
    return written


def _stage_summary(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Steps and minutes of each stage that ran (and its `init` weights, if it continued)."""
    summary: dict[str, dict[str, Any]] = {}
    for stage in ("vae", "teacher", "ode", "self-forcing"):
        metrics = out_dir / stage / "metrics.jsonl"
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x] if metrics.exists() else []
        if not lines:
            continue
        summary[stage] = {"steps": lines[-1]["step"], "minutes": round(lines[-1]["elapsed_s"] / 60, 1)}
        config = out_dir / stage / "config.json"
        init = json.loads(config.read_text()).get("init") if config.exists() else None
        if init:
            summary[stage]["init"] = init
    return summary
