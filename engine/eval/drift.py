"""Long-stream drift: does a 10-minute stream stay on prompt, sharp, on colour and alive?

The stream is cut into windows (default 10 s: long enough that even a large, slow object
wrapping diagonally around the frame is fully visible somewhere in it, and that a bouncing one
bounces); each window is recognised and scored against the
prompt active at its start (windows never straddle a prompt switch, and ``settle_s`` after a
switch is skipped while the scene transitions). Windows are aggregated per bucket (default one
minute of video). Reported per bucket:

* fidelity: mean overall score and per-attribute means of its windows;
* sharpness: Laplacian variance relative to the first windows of the same schedule segment
  (``sharpness_ratio``, median over the bucket) and the object edge width in px;
* colour: ``colour_error`` (object vs prompt palette) and ``colour_drift`` (object colour vs its
  colour in the first bucket, |dRGB| / 255, worst object);
* flicker (background luminance jitter) and ``frozen_fraction`` (near-identical pairs);
* alarms: share of windows with each per-window alarm, and bucket-level alarms (blur:
  edge width or sharpness ratio; colour: error or drift; flicker; frozen when motion was asked).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.data.parse import parse_caption
from engine.data.world import SceneSpec

from .fidelity import ATTRIBUTES, score_detections
from .quality import QualityThresholds, quality_measures
from .recognise import RecogniseConfig, classify_background, recognise_tracks

Schedule = str | SceneSpec | Sequence[tuple[int, str | SceneSpec]] | Sequence[tuple[int, str]]


@dataclass(frozen=True)
class DriftConfig:
    window_s: float = 10.0
    bucket_s: float = 60.0
    settle_s: float = 1.0
    min_window_s: float = 2.0  # a shorter tail of a segment is not scored
    reference_windows: int = 4  # sharpness reference: median over a prompt's first windows
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    recognise: RecogniseConfig = field(default_factory=RecogniseConfig)


def _normalise_schedule(schedule: Schedule) -> list[tuple[int, str | SceneSpec]]:
    if isinstance(schedule, str | SceneSpec):
        return [(0, schedule)]
    out = sorted(((int(f), c) for f, c in schedule), key=lambda x: x[0])
    if not out or out[0][0] != 0:
        raise ValueError("caption schedule must start at frame 0")
    return out


def _frames(source: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Accept single frames [H, W, 3] or chunks [n, H, W, 3]; yield chunks."""
    for x in source:
        arr = np.asarray(x)
        if arr.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {arr.dtype}")
        yield arr[None] if arr.ndim == 3 else arr


def iter_windows(
    source: Iterable[np.ndarray], schedule: Schedule, fps: float, config: DriftConfig
) -> Iterator[tuple[int, np.ndarray, str | SceneSpec]]:
    """Yield (first frame index, frames [n, H, W, 3], prompt) windows following the schedule."""
    sched = _normalise_schedule(schedule)
    win = max(2, round(config.window_s * fps))
    settle = round(config.settle_s * fps)
    min_len = max(2, round(config.min_window_s * fps))
    buf: list[np.ndarray] = []
    buf_start = 0  # absolute index of buf's first frame
    buffered = 0

    def segment_of(frame: int) -> int:
        return max(k for k, (f, _) in enumerate(sched) if f <= frame)

    def take(n: int) -> np.ndarray:
        nonlocal buf, buf_start, buffered
        arr = np.concatenate(buf) if len(buf) > 1 else buf[0]
        out, rest = arr[:n], arr[n:]
        buf = [rest] if len(rest) else []
        buf_start += n
        buffered -= n
        return out

    def drain(final: bool) -> Iterator[tuple[int, np.ndarray, str | SceneSpec]]:
        while buffered > 0:
            k = segment_of(buf_start)
            seg_start = sched[k][0]
            seg_end = sched[k + 1][0] if k + 1 < len(sched) else math.inf
            skip_to = seg_start + settle if k > 0 else seg_start
            if buf_start < skip_to:  # transition after a switch: not scored
                n = int(min(skip_to - buf_start, buffered))
                take(n)
                continue
            n_want = int(min(win, seg_end - buf_start))
            if buffered >= n_want:
                frames = take(n_want)
                if len(frames) >= min_len:
                    yield buf_start - n_want, frames, sched[k][1]
                continue
            if final:
                frames = take(buffered)
                if len(frames) >= min_len:
                    yield buf_start - len(frames), frames, sched[k][1]
            return

    for chunk in _frames(source):
        buf.append(chunk)
        buffered += len(chunk)
        yield from drain(False)
    yield from drain(True)


def evaluate_window(
    frames: np.ndarray, prompt: str | SceneSpec, fps: float, config: DriftConfig
) -> dict[str, Any]:
    spec = parse_caption(prompt) if isinstance(prompt, str) else prompt
    objs, labels = recognise_tracks(frames, fps, config.recognise)
    bg = classify_background(frames, labels) if spec.background is not None else None
    fid = score_detections(spec, objs, bg)
    assign = [m["detected"] for m in fid.matches]
    q = quality_measures(frames, labels, objs, spec, assign, config.thresholds)
    rgb = {}
    for exp, d in zip(spec.objects, assign, strict=True):
        if d is not None and exp.colour is not None:
            rgb[exp.colour] = list(objs[d].mean_rgb)
    return {
        "overall": fid.overall,
        "all_correct": fid.all_correct,
        "per_attribute": fid.per_attribute,
        "detected": [o.attributes() for o in objs],
        "object_rgb": rgb,
        **q,
    }


def _mean(vals: list[Any]) -> float | None:
    xs = [float(v) for v in vals if v is not None]
    return float(np.mean(xs)) if xs else None


def _median(vals: list[Any]) -> float | None:
    xs = [float(v) for v in vals if v is not None]
    return float(np.median(xs)) if xs else None


def drift_report(
    frames: Iterable[np.ndarray],
    caption_schedule: Schedule,
    fps: float = 16.0,
    config: DriftConfig | None = None,
) -> dict[str, Any]:
    """Evaluate a long stream. ``frames`` yields uint8 frames [H, W, 3] or chunks [n, H, W, 3];
    ``caption_schedule`` is one prompt or [(first frame, prompt), ...] starting at frame 0."""
    cfg = config or DriftConfig()
    th = cfg.thresholds
    sched = _normalise_schedule(caption_schedule)
    windows: list[dict[str, Any]] = []
    for start, win, prompt in iter_windows(frames, sched, fps, cfg):
        rec = evaluate_window(win, prompt, fps, cfg)
        key = prompt if isinstance(prompt, str) else repr(prompt)
        segment = max(k for k, (f, _) in enumerate(sched) if f <= start)
        rec.update(start_frame=start, start_s=start / fps, frames=len(win), prompt=key, segment=segment)
        windows.append(rec)
    # Sharpness reference per schedule segment: median Laplacian variance of its first windows
    # (one window alone is noisy: a wrapping object may be half out of the frame). Per segment,
    # not per prompt text: a repeated prompt may be drawn with other sizes, so other content.
    lap_ref: dict[int, float] = {}
    for seg in {w["segment"] for w in windows}:
        first = [w["laplacian_var"] for w in windows if w["segment"] == seg][: cfg.reference_windows]
        lap_ref[seg] = float(np.median(first))
    for w in windows:
        ref = lap_ref[w["segment"]]
        w["sharpness_ratio"] = w["laplacian_var"] / ref if ref > 0 else None
    buckets: list[dict[str, Any]] = []
    first_rgb: dict[str, np.ndarray] = {}
    by_bucket: dict[int, list[dict[str, Any]]] = {}
    for w in windows:
        by_bucket.setdefault(int(w["start_s"] // cfg.bucket_s), []).append(w)
    for b in sorted(by_bucket):
        ws = by_bucket[b]
        rgb_now: dict[str, list[list[float]]] = {}
        for w in ws:
            for c, v in w["object_rgb"].items():
                rgb_now.setdefault(c, []).append(v)
        drift = []
        for c, vs in rgb_now.items():
            m = np.mean(np.array(vs), axis=0)
            ref_rgb = first_rgb.setdefault(c, m)
            drift.append(float(np.linalg.norm(m - ref_rgb) / 255.0))
        brec: dict[str, Any] = {
            "bucket": b,
            "start_s": b * cfg.bucket_s,
            "windows": len(ws),
            "fidelity": _mean([w["overall"] for w in ws]),
            "all_correct": _mean([w["all_correct"] for w in ws]),
            "per_attribute": {a: _mean([w["per_attribute"].get(a) for w in ws]) for a in ATTRIBUTES},
            "laplacian_var": _mean([w["laplacian_var"] for w in ws]),
            "sharpness_ratio": _median([w["sharpness_ratio"] for w in ws]),
            "edge_width_px": _mean([w["edge_width_px"] for w in ws]),
            "colour_error": _mean([w["colour_error"] for w in ws]),
            "colour_drift": max(drift) if drift else None,
            "flicker_luma": _mean([w["flicker_luma"] for w in ws]),
            "background_mad": _mean([w["background_mad"] for w in ws]),
            "frozen_fraction": _mean([w["frozen_fraction"] for w in ws]),
            "motion_requested": any(w["motion_requested"] for w in ws),
            "window_alarm_rate": {k: _mean([w["alarms"][k] for w in ws]) for k in ws[0]["alarms"]},
        }
        sr, ew = brec["sharpness_ratio"], brec["edge_width_px"]
        ce, cd = brec["colour_error"], brec["colour_drift"]
        brec["alarms"] = {
            "blur": bool(
                (ew is not None and ew > th.edge_width_px) or (sr is not None and sr < th.sharpness_drop)
            ),
            "colour": bool(
                (ce is not None and ce > th.colour_error) or (cd is not None and cd > th.colour_drift)
            ),
            "flicker": bool(brec["flicker_luma"] is not None and brec["flicker_luma"] > th.flicker_luma),
            "frozen": bool(
                brec["motion_requested"] and (brec["frozen_fraction"] or 0.0) > th.frozen_fraction
            ),
        }
        buckets.append(brec)
    return {
        "fps": fps,
        "window_s": cfg.window_s,
        "bucket_s": cfg.bucket_s,
        "frames_scored": int(sum(w["frames"] for w in windows)),
        "windows": windows,
        "buckets": buckets,
        "summary": _summary(buckets),
    }


def _summary(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    if not buckets:
        return {}
    first, last = buckets[0], buckets[-1]
    keys = ("fidelity", "sharpness_ratio", "edge_width_px", "colour_error", "flicker_luma", "frozen_fraction")
    out: dict[str, Any] = {k: {"first": first[k], "last": last[k]} for k in keys}
    fid = [(b["start_s"] / 60.0, b["fidelity"]) for b in buckets if b["fidelity"] is not None]
    if len(fid) >= 2:
        x, y = np.array(fid).T
        out["fidelity_slope_per_min"] = float(np.polyfit(x, y, 1)[0])
    out["mean_fidelity"] = _mean([b["fidelity"] for b in buckets])
    out["alarms"] = {k: [b["bucket"] for b in buckets if b["alarms"][k]] for k in first["alarms"]}
    return out
