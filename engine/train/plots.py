"""Loss-curve plots of a run (one PNG per stage) from the stages' metrics.jsonl files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.train.run import MetricsLog

CURVES: dict[str, tuple[str, ...]] = {
    "text": ("loss",),
    "vae": ("loss", "l1", "l2", "grad"),
    "teacher": ("loss", "temporal"),
    "ode": ("loss",),
    "self-forcing": ("loss_fake", "dmd_grad", "real_gap"),
}


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) < n or n <= 1:
        return y
    kernel = np.ones(n) / n
    pad = np.concatenate([np.full(n - 1, y[0]), y])
    return np.convolve(pad, kernel, mode="valid")


def plot_run(out_dir: str | Path, dest: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for stage, keys in CURVES.items():
        records = MetricsLog(Path(out_dir) / stage / "metrics.jsonl").read()
        if not records:
            continue
        step = np.array([r["step"] for r in records])
        minutes = records[-1]["elapsed_s"] / 60.0
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
        for key in keys:
            if key not in records[0]:
                continue
            y = np.array([r[key] for r in records], dtype=np.float64)
            drawn = y > 0  # a log axis cannot show 0 (e.g. the temporal term of an image batch)
            x, y = step[drawn], y[drawn]
            if len(y) == 0:
                continue
            ax.plot(x, y, alpha=0.25, linewidth=0.8)
            ax.plot(x, _smooth(y, max(3, len(y) // 40)), label=key, color=ax.lines[-1].get_color())
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"rollcast train {stage}: {step[-1]} steps, {minutes:.0f} min")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = dest / f"train_{stage.replace('-', '_')}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
