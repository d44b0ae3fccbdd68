"""`rollcast eval --model`: held-out prompts and drift are generated and scored end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine.eval.model_eval import heldout_prompts


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
    assert report["drift"]["frames_scored"] > 0 and report["drift"]["buckets"]
