"""`rollcast train export`: install a finished run's weights as a preset's shipped weights.

Writes `dit.safetensors` (the Self Forcing student's EMA weights), `vae.safetensors`, for a
preset with a grounded prompt encoder `text.safetensors` (the grounding head), and
`teacher.safetensors` (the teacher's EMA weights, which serving never loads: the next
continuation's teacher stage starts from them, so the teacher's training adds up across
releases) into engine/weights/<preset>/ (or `dest`). Weights are stored in fp16 to keep the package small
(loading casts them back to the model's dtype); the VAE's latent statistics stay fp32.

`blend` < 1 exports the student moved back towards the weights its self-forcing stage started
from, start + blend * (student - start): a weight-space ensemble of a fine-tuned model and its
starting point (WiSE-FT, Wortsman et al. 2022), which can keep part of what a continuation gained
while giving back part of what it cost (docs/models.md).
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


def blended_student(out_dir: str | Path, blend: float = 1.0) -> dict[str, torch.Tensor]:
    """The self-forcing stage's student, `blend` of the way from the weights it started from
    (1: the student itself, 0: its start)."""
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    student = read_checkpoint(stage_file(out_dir, "self-forcing", "student.safetensors"))
    if blend == 1.0:
        return student
    start = read_checkpoint(stage_file(out_dir, "self-forcing", "start.safetensors"))
    if start.keys() != student.keys():
        raise ValueError("the self-forcing stage's start and student weights hold different tensors")
    return {
        k: torch.lerp(start[k].float(), v.float(), blend) if v.is_floating_point() else v
        for k, v in student.items()
    }


def export_weights(
    out_dir: str | Path, preset: str = "tiny", dest: str | Path | None = None, blend: float = 1.0
) -> dict[str, Path]:
    dit = blended_student(out_dir, blend)  # read before `dest`, which may hold the start, is replaced
    target = Path(dest) if dest is not None else WEIGHTS_DIR / preset
    target.mkdir(parents=True, exist_ok=True)
    vae = read_state_dict(stage_file(out_dir, "vae", "vae.safetensors"))
    written = {"dit": target / "dit.safetensors", "vae": target / "vae.safetensors"}
    save_safetensors(_half(dit), written["dit"])
    save_safetensors(_half(vae), written["vae"])
    text_head = Path(out_dir) / "text" / "text.safetensors"
    if text_head.exists():  # a preset with a grounded prompt encoder (tiny)
        written["text"] = target / "text.safetensors"
        save_safetensors(_half(read_state_dict(text_head)), written["text"])
    teacher = Path(out_dir) / "teacher" / "teacher.safetensors"
    if teacher.exists():  # a run with its own teacher (not one that only continued self-forcing)
        written["teacher"] = target / "teacher.safetensors"
        save_safetensors(_half(read_checkpoint(teacher)), written["teacher"])
    manifest: dict[str, Any] = {"preset": preset, "stages": _stage_summary(Path(out_dir))}
    if blend != 1.0:
        manifest["blend"] = blend
    written["manifest"] = target / "manifest.json"
    if _continues(manifest, target) and written["manifest"].exists():
        # stages continued from the weights being replaced: keep the history of what they started from
        manifest["continued_from"] = json.loads(written["manifest"].read_text())
    written["manifest"].write_text(json.dumps(manifest, indent=2) + "\n")
    return written


def _continues(manifest: dict[str, Any], target: Path) -> bool:
    """Whether a stage started from weights in `target` (not from another run's, e.g. the VAE
    decoder run starting from the encoder run)."""
    inits = [Path(s["init"]) for s in manifest["stages"].values() if s.get("init")]
    return any(init.resolve().parent == target.resolve() for init in inits)


def _stage_summary(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Steps and minutes of each stage that ran (and its `init` weights, if it continued)."""
    summary: dict[str, dict[str, Any]] = {}
    for stage in ("text", "vae", "teacher", "ode", "self-forcing"):
        metrics = out_dir / stage / "metrics.jsonl"
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x] if metrics.exists() else []
        config = out_dir / stage / "config.json"
        init = json.loads(config.read_text()).get("init") if config.exists() else None
        if not lines and not init:
            continue
        # no steps logged but an init: the stage adopted earlier weights (e.g. `max_steps=0`)
        last = lines[-1] if lines else {"step": 0, "elapsed_s": 0.0}
        summary[stage] = {"steps": last["step"], "minutes": round(last["elapsed_s"] / 60, 1)}
        if init:
            summary[stage]["init"] = init
    return summary
