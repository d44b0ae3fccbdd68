"""Programmatic evaluation of generated videos and plain-text tables for the CLI."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from engine.data.parse import CaptionParseError, parse_caption
from engine.data.world import SceneSpec

from .fidelity import ATTRIBUTES, FidelityTally, score_detections
from .quality import QualityThresholds, quality_measures
from .recognise import RecogniseConfig, classify_background, recognise_tracks

_QUALITY_KEYS = ("edge_width_px", "laplacian_var", "colour_error", "flicker_luma", "frozen_fraction")


def evaluate_videos(
    items: Iterable[tuple[np.ndarray, str | SceneSpec]],
    fps: float = 16.0,
    thresholds: QualityThresholds | None = None,
    config: RecogniseConfig | None = None,
    include_background: bool = False,
) -> dict[str, Any]:
    """Score (frames uint8 [T, H, W, 3], caption) pairs.

    Returns ``{"n", "accuracy" (per attribute, object-level), "overall" (mean per-clip overall),
    "all_correct" (share of clips with every attribute right), "at_border" (share of the
    detected objects that the frame border cuts in most of the frames where they show: the
    world's training clips have none), "empty" (share of the clips in which no object is
    detected: one that left the frame and never came back), "quality" (means), "alarm_rate",
    "videos" (per clip: caption, per_attribute, overall, detected, quality), "errors"}``.
    """
    tally = FidelityTally()
    videos: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for i, (frames, prompt) in enumerate(items):
        try:
            spec = parse_caption(prompt) if isinstance(prompt, str) else prompt
        except CaptionParseError as e:
            errors.append({"index": i, "error": str(e)})
            continue
        objs, labels = recognise_tracks(frames, fps, config)
        bg = classify_background(frames, labels) if spec.background is not None else None
        fid = score_detections(spec, objs, bg, include_background)
        q = quality_measures(frames, labels, objs, spec, [m["detected"] for m in fid.matches], thresholds)
        tally.add(fid)
        videos.append(
            {
                "index": i,
                "caption": prompt if isinstance(prompt, str) else None,
                "per_attribute": fid.per_attribute,
                "overall": fid.overall,
                "all_correct": fid.all_correct,
                "detected": [o.to_dict() for o in objs],
                "background": fid.background,
                "quality": q,
            }
        )
    summary = tally.summary()
    quality = {}
    for k in _QUALITY_KEYS:
        vals = [v["quality"][k] for v in videos if v["quality"][k] is not None]
        quality[k] = float(np.mean(vals)) if vals else None
    alarm_keys = videos[0]["quality"]["alarms"] if videos else {}
    inside = [o["inside"] for v in videos for o in v["detected"]]
    return {
        "n": len(videos),
        "accuracy": summary["accuracy"],
        "totals": summary["totals"],
        "overall": summary["overall"],
        "all_correct": summary["all_correct"],
        "speed_along_prompt": summary["speed_along_prompt"],
        "at_border": float(np.mean([f < 0.5 for f in inside])) if inside else None,
        "empty": float(np.mean([not v["detected"] for v in videos])) if videos else None,
        "quality": quality,
        "alarm_rate": {k: float(np.mean([v["quality"]["alarms"][k] for v in videos])) for k in alarm_keys},
        "videos": videos,
        "errors": errors,
    }


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if pct:
        return f"{100.0 * float(v):.1f}%"
    return f"{float(v):.3g}" if isinstance(v, float) else str(v)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain aligned text table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    sep = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join([line, sep, *body])


def format_accuracy_table(
    results: dict[str, dict[str, Any]], extra: tuple[str, ...] = ("background",)
) -> str:
    """Rows: conditions; columns: per-attribute accuracy, all-correct share, clips."""
    cols = [*ATTRIBUTES, *extra]
    rows = []
    for name, res in results.items():
        acc = res["accuracy"]
        rows.append(
            [
                name,
                *(_fmt(acc.get(a), pct=True) for a in cols),
                _fmt(res["all_correct"], pct=True),
                str(res["clips"]),
            ]
        )
    return format_table(["condition", *cols, "all-correct", "clips"], rows)


def format_drift_table(report: dict[str, Any]) -> str:
    headers = ["minute", "windows", "fidelity", "colour", "shape", "size", "motion", "edge px", "sharp x",
               "col err", "col drift", "flicker", "frozen", "alarms"]  # fmt: skip
    rows = []
    for b in report["buckets"]:
        pa = b["per_attribute"]
        alarms = ",".join(k for k, v in b["alarms"].items() if v) or "-"
        rows.append(
            [
                f"{b['start_s'] / 60.0:.1f}",
                str(b["windows"]),
                _fmt(b["fidelity"], pct=True),
                *(_fmt(pa.get(a), pct=True) for a in ("colour", "shape", "size", "motion")),
                _fmt(b["edge_width_px"]),
                _fmt(b["sharpness_ratio"]),
                _fmt(b["colour_error"]),
                _fmt(b["colour_drift"]),
                _fmt(b["flicker_luma"]),
                _fmt(b["frozen_fraction"], pct=True),
                alarms,
            ]
        )
    return format_table(headers, rows)
