"""Evaluating a generator: prompt fidelity on held-out prompts, drift over a long stream.

Prompt fidelity: for each held-out prompt (colour-shape-motion triples never rendered in
training, in canonical wording, plus training triples worded with held-out templates), open a
session, generate `seconds` of video and score it with the analytic evaluator. "Fidelity" is
the mean over clips of the per-clip mean attribute accuracy (count, colour, shape, size,
motion); "all correct" is the share of clips with every attribute right. With `later` start
times the same sessions stream on and windows of the same length further in are scored too.

Drift: one session streams `minutes` of video under one prompt; the evaluator scores 10-second
windows and reports per-minute fidelity, sharpness, colour stability, flicker and frozen
frames. The requirement checked by `rollcast eval` is last-minute fidelity >= 95 % of the
first minute's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.data.eval_prompts import EvalPrompt, heldout_eval_prompts
from engine.eval.drift import drift_report
from engine.eval.report import evaluate_videos

if TYPE_CHECKING:
    from engine.generator import Generator

Progress = Callable[[int, int], None]


def generate_clip(gen: Generator, prompt: str, frames: int, seed: int) -> np.ndarray:
    """The first `frames` frames of a new session on `prompt`: uint8 [frames, H, W, 3]."""
    session = gen.open(prompt, seed=seed)
    out: list[np.ndarray] = []
    got = 0
    while got < frames:
        chunk = session.step().frames
        out.append(chunk)
        got += len(chunk)
    session.close()
    return np.concatenate(out)[:frames]


def evaluate_prompts(
    gen: Generator,
    prompts: list[EvalPrompt],
    seconds: float = 2.0,
    seed: int = 0,
    progress: Progress | None = None,
    later: Sequence[float] = (),
) -> dict[str, Any]:
    """Score each prompt's first `seconds`; with `later` start times, each session streams on
    and the `seconds`-long windows starting there are scored too (`report["later"]`): the
    stream after its start, which a short clip does not show."""
    fps = gen.config.fps
    frames = max(1, round(seconds * fps))
    starts = [round(start * fps) for start in later]
    streamed = max([frames, *(lo + frames for lo in starts)])
    clips = []
    t0 = time.perf_counter()
    for i, p in enumerate(prompts):
        clips.append(generate_clip(gen, p.text, streamed, seed + i))
        if progress:
            progress(i + 1, len(prompts))
    generate_s = time.perf_counter() - t0

    def window(lo: int) -> list[tuple[np.ndarray, str]]:
        return [(clip[lo : lo + frames], p.text) for clip, p in zip(clips, prompts, strict=True)]

    report = evaluate_videos(window(0), fps=fps)
    for video, p in zip(report["videos"], prompts, strict=False):
        video["kind"], video["template"] = p.kind, p.template
    report["by_kind"] = {
        kind: float(np.mean([v["overall"] for v in report["videos"] if v["kind"] == kind]))
        for kind in sorted({p.kind for p in prompts})
    }
    report["generate_seconds"] = generate_s
    report["later"] = [
        {"start_s": start, **_summary(evaluate_videos(window(lo), fps=fps))}
        for start, lo in zip(later, starts, strict=True)
    ]
    return report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        k: report[k]
        for k in ("overall", "accuracy", "all_correct", "speed_along_prompt", "at_border", "empty")
    }


def heldout_prompts(limit: int | None = None, seed: int = 0) -> list[EvalPrompt]:
    """Held-out triples (canonical wording) and held-out templates, interleaved, up to `limit`."""
    prompts = heldout_eval_prompts(seed=seed)
    triples = [p for p in prompts if p.kind == "triple"]
    templates = [p for p in prompts if p.kind == "template"]
    mixed = [p for pair in zip(triples, templates, strict=False) for p in pair]
    mixed += triples[len(templates) :] + templates[len(triples) :]
    return mixed[:limit] if limit else mixed


def stream_frames(
    gen: Generator, prompt: str, total: int, seed: int, progress: Progress | None
) -> Iterator[np.ndarray]:
    session = gen.open(prompt, seed=seed)
    produced = 0
    while produced < total:
        chunk = session.step().frames[: total - produced]
        produced += len(chunk)
        if progress:
            progress(produced, total)
        yield chunk
    session.close()


def evaluate_drift(
    gen: Generator,
    prompt: str,
    minutes: float,
    seed: int = 0,
    progress: Progress | None = None,
    keep_windows: bool = False,
) -> dict[str, Any]:
    """The drift report of one `minutes`-long session on `prompt`; its per-window records only
    with `keep_windows` (a 10-minute stream has 60)."""
    fps = gen.config.fps
    total = round(minutes * 60 * fps)
    t0 = time.perf_counter()
    report = drift_report(stream_frames(gen, prompt, total, seed, progress), prompt, fps=fps)
    report["wall_seconds"] = time.perf_counter() - t0
    buckets = [b for b in report["buckets"] if b["fidelity"] is not None]
    if len(buckets) >= 2 and buckets[0]["fidelity"]:
        report["summary"]["last_over_first"] = buckets[-1]["fidelity"] / buckets[0]["fidelity"]
    if not keep_windows:
        report.pop("windows")
    return report
