"""Validation of the evaluator on the synthetic world (ground truth known exactly).

Accuracy: N clips (alternating train / held-out split) are rendered, optionally degraded, and
scored against their own SceneSpec; the per-attribute accuracy must be >= 98 % clean and >= 95 %
under mild degradations. Defect detection: the first clips are corrupted with each defect and the
corresponding alarm must fire, while clean / mildly degraded clips must not raise it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.data.dataset import make_clip
from engine.data.render import RenderConfig
from engine.data.stream import StreamRenderer
from engine.data.world import SceneSpec

from .defects import flicker, freeze, gaussian_blur, h264_roundtrip, hue_rotate, mild_degradation
from .drift import DriftConfig, drift_report
from .fidelity import FidelityTally, score_detections
from .quality import quality_measures
from .recognise import classify_background, recognise_tracks

Degrade = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]

CONDITIONS: dict[str, Degrade] = {
    "clean": lambda f, _r, _fps: f,
    "mild": lambda f, r, _fps: mild_degradation(f, r),  # blur sigma 0.8 + noise sigma 3
    "h264": lambda f, _r, fps: h264_roundtrip(f, fps, crf=28),
}
DEFECTS: dict[str, tuple[Degrade, str]] = {
    # name: (corruption, alarm that must fire)
    "blur": (lambda f, _r, _fps: gaussian_blur(f, 2.5), "blur"),
    "hue": (lambda f, _r, _fps: hue_rotate(f, 90.0), "colour"),
    "frozen": (lambda f, _r, _fps: freeze(f, len(f) // 4, len(f) // 2), "frozen"),
    "flicker": (lambda f, _r, _fps: flicker(f, 4.0), "flicker"),
}


def _eligible(defect: str, spec: SceneSpec) -> bool:
    if defect == "hue":  # a hue rotation leaves white white
        return any(o.colour != "white" for o in spec.objects)
    if defect == "frozen":
        return any(o.motion != "still" for o in spec.objects)
    return True


def _score(frames: np.ndarray, spec: SceneSpec, fps: float) -> tuple[Any, dict[str, Any]]:
    objs, labels = recognise_tracks(frames, fps)
    fid = score_detections(spec, objs, classify_background(frames, labels))
    q = quality_measures(frames, labels, objs, spec, [m["detected"] for m in fid.matches])
    return fid, q


def run_validation(
    n: int,
    seed: int = 0,
    conditions: tuple[str, ...] = ("clean", "mild", "h264"),
    defects_n: int | None = None,
    config: RenderConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    cfg = config or RenderConfig()
    tallies = {c: FidelityTally() for c in conditions}
    split_tallies = {f"{c}/{s}": FidelityTally() for c in conditions for s in ("train", "heldout")}
    false_alarms = {c: {k: 0 for k in ("blur", "colour", "flicker", "frozen")} for c in conditions}
    defects_n = min(n, 100) if defects_n is None else min(defects_n, n)
    detect = {d: [0, 0] for d in DEFECTS}
    t_render = t_eval = 0.0
    two_object = 0
    for i in range(n):
        split = "train" if i % 2 == 0 else "heldout"
        t0 = time.perf_counter()
        clip = make_clip(i // 2, split, seed, cfg)
        t_render += time.perf_counter() - t0
        two_object += clip.spec.count == 2
        for cond in conditions:
            rng = np.random.default_rng([seed, i, 1])
            frames = CONDITIONS[cond](clip.frames, rng, cfg.fps)
            t0 = time.perf_counter()
            fid, q = _score(frames, clip.spec, cfg.fps)
            if cond == "clean":
                t_eval += time.perf_counter() - t0
            tallies[cond].add(fid)
            split_tallies[f"{cond}/{split}"].add(fid)
            for k, v in q["alarms"].items():
                false_alarms[cond][k] += int(v)
        if i < defects_n:
            for name, (corrupt, alarm) in DEFECTS.items():
                if not _eligible(name, clip.spec):
                    continue
                frames = corrupt(clip.frames, np.random.default_rng([seed, i, 2]), cfg.fps)
                _, q = _score(frames, clip.spec, cfg.fps)
                detect[name][0] += int(q["alarms"][alarm])
                detect[name][1] += 1
        if progress is not None and (i + 1) % max(1, n // 10) == 0:
            progress(f"{i + 1}/{n} clips")
    return {
        "clips": n,
        "two_object_clips": two_object,
        "config": {
            "width": cfg.width,
            "height": cfg.height,
            "fps": cfg.fps,
            "frames": cfg.num_frames,
            "seed": seed,
        },
        "accuracy": {c: t.summary() for c, t in tallies.items()},
        "accuracy_by_split": {k: t.summary() for k, t in split_tallies.items()},
        "false_alarm_rate": {c: {k: v / n for k, v in fa.items()} for c, fa in false_alarms.items()},
        "defect_detection": {
            d: {"alarm": DEFECTS[d][1], "detected": c, "eligible": e, "rate": (c / e if e else None)}
            for d, (c, e) in detect.items()
        },
        "seconds_per_clip": {"render": t_render / max(n, 1), "evaluate": t_eval / max(n, 1)},
    }


STREAM_PROMPTS = (
    "a red circle moving left and a blue triangle bouncing on a gray background",
    "a yellow triangle growing on a navy checkerboard",
    "a large white square moving down and to the right on a black background",
    "a green square bouncing and a purple circle staying still",
    "a small orange triangle moving up on a maroon striped background",
    "a cyan square shrinking on a dark green background",
)


def run_stream_validation(
    minutes: float, seed: int = 0, defect: str | None = None, config: RenderConfig | None = None
) -> dict[str, Any]:
    """Render a synthetic stream switching prompt every minute (optionally corrupted by
    ``defect`` from the middle on) and return its drift report."""
    cfg = config or RenderConfig()
    total = round(minutes * 60 * cfg.fps)
    per_prompt = round(60 * cfg.fps)
    stream = StreamRenderer(STREAM_PROMPTS[0], cfg, seed=seed)
    rng = np.random.default_rng(seed)

    def frames() -> Any:
        done = 0
        while done < total:
            if done and done % per_prompt == 0:
                stream.set_prompt(STREAM_PROMPTS[(done // per_prompt) % len(STREAM_PROMPTS)])
            n = min(64, total - done, per_prompt - done % per_prompt)
            chunk = stream.render(n)
            if defect is not None and done >= total // 2:
                chunk = DEFECTS[defect][0](chunk, rng, cfg.fps) if defect != "frozen" else freeze(chunk, 0, n)
            yield chunk
            done += n

    schedule = [
        (k, STREAM_PROMPTS[(k // per_prompt) % len(STREAM_PROMPTS)])
        for k in range(0, max(total, 1), per_prompt)
    ]
    return drift_report(frames(), schedule, cfg.fps, DriftConfig())
