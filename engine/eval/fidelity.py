"""Prompt fidelity: does the video show what the caption asks for?

Scoring (documented contract):

* the caption is parsed into a SceneSpec; attributes it does not mention (e.g. size) are not
  scored;
* expected objects are matched one-to-one to detected objects by the assignment that maximises
  the number of agreeing attributes (brute force: scenes have at most a few objects);
* ``per_attribute[a]`` for a in colour/shape/size/motion is the share of expected objects that
  mention ``a`` and whose matched detection agrees (an unmatched object counts as wrong);
  ``per_attribute["count"]`` is 1 if exactly as many objects were detected as asked, else 0;
* ``overall`` is the mean of the available per-attribute values (count, colour, shape, size,
  motion) and ``all_correct`` says whether all of them are 1. The background (colour and
  texture) is reported in ``per_attribute["background"]`` when the caption names one, but is not
  part of ``overall`` unless ``include_background=True``.

A finer motion measure beside the class: for an expected translation whose object was found,
``speed_along_prompt`` is the detected median velocity projected on the prompted direction
(frame widths per second; the world moves at 0.12-0.18). Averaged over clips it tells a model
that moves objects the asked way too slowly (positive, below the class threshold) from one
whose motion ignores the prompt (about zero) or runs against it (negative).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import numpy as np

from engine.data.parse import parse_caption
from engine.data.vocab import DIRECTIONS
from engine.data.world import ObjectSpec, SceneSpec

from .recognise import DetectedObject, RecogniseConfig, classify_background, recognise_tracks

ATTRIBUTES: tuple[str, ...] = ("count", "colour", "shape", "size", "motion")
OBJECT_ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "size", "motion")
MAX_CANDIDATES = 8


@dataclass
class FidelityResult:
    expected: SceneSpec
    detected: list[DetectedObject]
    per_attribute: dict[str, float | None]
    overall: float
    all_correct: bool
    matches: list[dict[str, Any]]  # per expected object: {"detected": index | None, attr: bool}
    background: dict[str, Any] | None = None
    tallies: dict[str, tuple[int, int]] = field(default_factory=dict)  # attr -> (correct, total)

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected.to_dict(),
            "detected": [d.to_dict() for d in self.detected],
            "per_attribute": self.per_attribute,
            "overall": self.overall,
            "all_correct": self.all_correct,
            "matches": self.matches,
            "background": self.background,
        }


def _agree(exp: ObjectSpec, det: DetectedObject | None) -> dict[str, bool]:
    """Attribute -> right, for the attributes the prompt names and the pixels show (a size the
    frame border hides is not scored; a missing object is wrong in all of them)."""
    out = {}
    for a in OBJECT_ATTRIBUTES:
        want = getattr(exp, a)
        got = None if det is None else getattr(det, a)
        if want is not None and (det is None or got is not None):
            out[a] = got == want
    return out


def match_objects(expected: tuple[ObjectSpec, ...], detected: list[DetectedObject]) -> list[int | None]:
    """Detected index (or None) for every expected object, maximising agreeing attributes."""
    cands = list(range(min(len(detected), MAX_CANDIDATES)))
    slots: list[int | None] = [*cands, *([None] * len(expected))]
    best: list[int | None] = [None] * len(expected)
    best_score = -1.0
    seen = set()
    for perm in permutations(slots, len(expected)):
        if perm in seen:
            continue
        seen.add(perm)
        score = 0.0
        for e, d in zip(expected, perm, strict=True):
            agree = _agree(e, None if d is None else detected[d])
            score += sum(agree.values()) + (0.01 if d is not None else 0.0)
        if score > best_score:
            best, best_score = list(perm), score
    return best


def score_detections(
    spec: SceneSpec,
    detected: list[DetectedObject],
    background: dict[str, Any] | None = None,
    include_background: bool = False,
) -> FidelityResult:
    """Score already detected objects against a spec (see module docstring)."""
    assign = match_objects(spec.objects, detected)
    tallies: dict[str, list[int]] = {a: [0, 0] for a in OBJECT_ATTRIBUTES}
    matches = []
    for exp, d in zip(spec.objects, assign, strict=True):
        agree = _agree(exp, None if d is None else detected[d])
        for a, ok in agree.items():
            tallies[a][0] += int(ok)
            tallies[a][1] += 1
        match: dict[str, Any] = {"detected": d, **agree}
        if d is not None and exp.motion in DIRECTIONS:
            dx, dy = DIRECTIONS[exp.motion]
            vx, vy = detected[d].velocity
            match["speed_along_prompt"] = vx * dx + vy * dy
        matches.append(match)
    count_ok = len(detected) == spec.count
    tallies["count"] = [int(count_ok), 1]
    per: dict[str, float | None] = {}
    for a in ATTRIBUTES:
        c, n = tallies[a]
        per[a] = c / n if n else None
    bg_report = None
    if spec.background is not None and background is not None:
        checks = []
        if spec.background.colour is not None:
            checks.append(background["colour"] == spec.background.colour)
        if spec.background.texture is not None:
            checks.append(background["texture"] == spec.background.texture)
        per["background"] = float(np.mean(checks)) if checks else None
        tallies["background"] = [sum(checks), len(checks)]
        bg_report = {"expected": spec.background.to_dict(), "detected": background}
    keys = [*ATTRIBUTES, "background"] if include_background else list(ATTRIBUTES)
    vals = [v for k in keys if (v := per.get(k)) is not None]
    overall = float(np.mean(vals)) if vals else 0.0
    return FidelityResult(
        expected=spec,
        detected=detected,
        per_attribute=per,
        overall=overall,
        all_correct=all(v == 1.0 for v in vals),
        matches=matches,
        background=bg_report,
        tallies={k: (v[0], v[1]) for k, v in tallies.items()},
    )


def score_prompt_fidelity(
    frames: np.ndarray,
    prompt: str | SceneSpec,
    fps: float = 16.0,
    config: RecogniseConfig | None = None,
    include_background: bool = False,
) -> FidelityResult:
    """Recognise uint8 frames [T, H, W, 3] and score them against a caption or SceneSpec."""
    spec = parse_caption(prompt) if isinstance(prompt, str) else prompt
    detected, labels = recognise_tracks(frames, fps, config)
    bg = classify_background(frames, labels) if spec.background is not None else None
    return score_detections(spec, detected, bg, include_background)


class FidelityTally:
    """Accumulates per-attribute (correct, total) over many clips."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}
        self.clips = 0
        self.all_correct = 0
        self.overall_sum = 0.0
        self.along: list[float] = []  # speed_along_prompt of every found translation

    def add(self, result: FidelityResult) -> None:
        for k, (c, n) in result.tallies.items():
            acc = self.counts.setdefault(k, [0, 0])
            acc[0] += c
            acc[1] += n
        self.clips += 1
        self.all_correct += int(result.all_correct)
        self.overall_sum += result.overall
        self.along += [m["speed_along_prompt"] for m in result.matches if "speed_along_prompt" in m]

    def accuracy(self) -> dict[str, float | None]:
        keys = [*ATTRIBUTES, *(k for k in self.counts if k not in ATTRIBUTES)]
        return {k: (c / n if n else None) for k in keys for c, n in [self.counts.get(k, [0, 0])]}

    def summary(self) -> dict[str, Any]:
        return {
            "clips": self.clips,
            "accuracy": self.accuracy(),
            "totals": {k: {"correct": c, "total": n} for k, (c, n) in self.counts.items()},
            "overall": self.overall_sum / self.clips if self.clips else None,
            "all_correct": self.all_correct / self.clips if self.clips else None,
            "speed_along_prompt": {
                "mean": float(np.mean(self.along)) if self.along else None,
                "median": float(np.median(self.along)) if self.along else None,
                "objects": len(self.along),
            },
        }
