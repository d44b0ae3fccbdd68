"""`rollcast train`: every stage runs end to end on the micro `test` preset, writes its loss log,
checkpoint and weights, resumes from its checkpoint, and rejects unknown config keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.train.cli import main
from engine.train.config import default_config_path, load_config
from engine.train.run import MetricsLog

FAST = ["--preset", "test", "--quiet", "--set", "threads=1", "--set", "log_every=1"]


@pytest.fixture(autouse=True)
def _restore_threads():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _steps(path: Path) -> list[int]:
    return [r["step"] for r in MetricsLog(path).read()]


def test_shipped_configs_load() -> None:
    from engine.train.cli import STAGES

    for stage, module in STAGES.items():
        cls = __import__(module, fromlist=["CONFIG"]).CONFIG
        cfg = load_config(cls, default_config_path(stage))
        assert cfg.max_minutes <= 55.0, stage  # every stage ends within the hour


def test_unknown_config_key_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vae", "--out", str(tmp_path), *FAST, "--set", "learning_rate=1"]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_stage_needs_its_predecessor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["teacher", "--out", str(tmp_path), *FAST]) == 2
    assert "rollcast train vae" in capsys.readouterr().err


def test_vae_stage_checkpoints_and_resumes(tmp_path: Path) -> None:
    args = ["vae", "--out", str(tmp_path), *FAST, "--set", "stats_clips=2", "--set", "batch_size=2"]
    assert main([*args, "--max-steps", "4"]) == 0
    stage = tmp_path / "vae"
    assert {"checkpoint.pt", "metrics.jsonl", "vae.safetensors", "recon.png", "config.json"} <= {
        p.name for p in stage.iterdir()
    }
    assert _steps(stage / "metrics.jsonl") == [1, 2, 3, 4]
    assert main([*args, "--max-steps", "6", "--resume"]) == 0
    assert _steps(stage / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]
    assert torch.load(stage / "checkpoint.pt", weights_only=False)["step"] == 6
    # without --resume a stage starts over
    assert main([*args, "--max-steps", "2"]) == 0
    assert _steps(stage / "metrics.jsonl") == [1, 2]


def test_all_stages_run_in_order_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path), *FAST]
    assert main(["vae", *out, "--max-steps", "3", "--set", "stats_clips=2"]) == 0
    assert main(["teacher", *out, "--max-steps", "3", "--set", "dataset_clips=8", "--set", "eval_prompts=2",
                 "--set", "eval_steps=4"]) == 0  # fmt: skip
    assert main(["ode", *out, "--max-steps", "3", "--set", "trajectories=4", "--set", "eval_prompts=2",
                 "--set", "eval_chunks=2"]) == 0  # fmt: skip
    assert (
        main(["self-forcing", *out, "--max-steps", "3", "--set", "eval_prompts=2", "--set", "eval_chunks=2"])
        == 0
    )
    # the ode stage resumes without regenerating its trajectories
    shards = sorted((tmp_path / "ode" / "trajectories").glob("*.safetensors"))
    ode = ["--set", "trajectories=4", "--set", "eval_prompts=2", "--set", "eval_chunks=2"]
    assert main(["ode", *out, "--max-steps", "5", "--resume", *ode]) == 0
    assert sorted((tmp_path / "ode" / "trajectories").glob("*.safetensors")) == shards
    assert _steps(tmp_path / "ode" / "metrics.jsonl")[-1] == 5
    capsys.readouterr()
    dest = tmp_path / "weights"
    assert main(["export", "--out", str(tmp_path), "--preset", "test", "--dest", str(dest)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert {Path(p).name for p in written.values()} == {"dit.safetensors", "vae.safetensors", "manifest.json"}
    from engine.generator import Generator
    from engine.train.models import training_preset

    gen = Generator.from_config(training_preset("test"))
    gen.load_weights(dest)
    assert gen.open("a red circle moving left", seed=0).step().num_frames == 12
