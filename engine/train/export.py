"""`rollcast train export`: install a finished run's weights as a preset's shipped weights.

Writes `dit.safetensors` (the Self Forcing student's EMA weights) and `vae.safetensors` into
engine/weights/<preset>/ (or `dest`). Weights are stored in fp16 to keep the package small
(loading casts them back to the model's dtype); the VAE's latent statistics stay fp32.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    summary = {}
    for stage in ("vae", "teacher", "ode", "self-forcing"):
        metrics = Path(out_dir) / stage / "metrics.jsonl"
        if metrics.exists():
            lines = [json.loads(x) for x in metrics.read_text().splitlines() if x]
            if lines:
                summary[stage] = {
                    "steps": lines[-1]["step"],
                    "minutes": round(lines[-1]["elapsed_s"] / 60, 1),
                }
    written["manifest"] = target / "manifest.json"
    written["manifest"].write_text(json.dumps({"preset": preset, "stages": summary}, indent=2) + "\n")
    return written
