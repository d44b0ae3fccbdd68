"""`rollcast eval --model`: held-out prompts and drift are generated and scored end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine.eval import evaluate_videos
from engine.eval.model_eval import evaluate_prompts, generate_clip, heldout_prompts
from engine.generator import Generator


def test_heldout_prompts_mix_unseen_triples_and_templates() -> None:
    prompts = heldout_prompts(6)
    assert len(prompts) == 6
    assert {p.kind for p in prompts} == {"triple", "template"}
    assert len({p.text for p in prompts}) == 6


def test_eval_command_scores_a_model(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        "eval",
        "--model",
        "test",
        "--heldout",
        "2",
        "--seconds",
        "1",
        "--later",
        "0.5",
        "--drift-minutes",
        "0.2",
        "--json",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Prompt fidelity of test on 2 held-out prompts" in done.stdout
    report = json.loads(out.read_text())["model"]
    assert report["heldout"]["n"] == 2
    assert set(report["heldout"]["accuracy"]) >= {"colour", "shape", "motion"}
    assert 0.0 <= report["heldout"]["overall"] <= 1.0
    assert "Later in the same sessions (1 s windows)" in done.stdout
    assert [w["start_s"] for w in report["heldout"]["later"]] == [0.5]
    assert "clips with no object in the window: 0 s" in done.stdout
    assert 0.0 <= report["heldout"]["later"][0]["empty"] <= 1.0
    assert report["drift"]["frames_scored"] > 0 and report["drift"]["buckets"]


def test_later_windows_score_the_same_sessions_further_in() -> None:
    gen = Generator.from_preset("tiny")
    prompts = heldout_prompts(2)
    rep = evaluate_prompts(gen, prompts, seconds=1.0, seed=3, later=[0.0, 1.5])
    first, later = rep["later"]
    # the window at 0 is the clip itself: the sessions streamed on did not change their start
    assert first["overall"] == rep["overall"] and first["accuracy"] == rep["accuracy"]
    # the window at 1.5 s is frames 24-39 of each prompt's own session (seed + index)
    fps = gen.config.fps
    lo, n = round(1.5 * fps), round(fps)
    streams = [generate_clip(gen, p.text, lo + n, 3 + i) for i, p in enumerate(prompts)]
    direct = evaluate_videos(
        [(s[lo : lo + n], p.text) for s, p in zip(streams, prompts, strict=True)], fps=fps
    )
    assert later["start_s"] == 1.5
    assert later["overall"] == direct["overall"] and later["accuracy"] == direct["accuracy"]
    assert later["speed_along_prompt"] == direct["speed_along_prompt"]
    assert later["empty"] == direct["empty"]
