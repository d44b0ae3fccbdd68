"""`rollcast train`: every stage runs end to end on the micro `test` preset, writes its loss log,
checkpoint and weights, resumes from its checkpoint, and rejects unknown config keys."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from engine.train.cli import main
from engine.train.config import default_config_path, load_config
from engine.train.dmd import direction_loss, dmd_loss
from engine.train.models import training_preset
from engine.train.run import MetricsLog
from engine.train.stages import self_forcing
from engine.train.stages.self_forcing import adversarial_direction, world_regression_loss
from engine.vae.tiny import TinyVAE

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


def test_decoder_fine_tune_keeps_the_latent_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["vae", *FAST, "--set", "stats_clips=2", "--set", "batch_size=2", "--max-steps", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    trained = tmp_path / "a" / "vae" / "vae.safetensors"
    tune = ["--set", f"init={trained}", "--set", "train_encoder=false", "--set", "warmup_steps=1"]
    assert main([*args, "--out", str(tmp_path / "b"), *tune]) == 0
    before, after = load_file(trained), load_file(tmp_path / "b" / "vae" / "vae.safetensors")
    assert before.keys() == after.keys()
    for key in before:  # encoder and latent mean/std unchanged: the latent space is the same
        if not key.startswith("decoder."):
            assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    capsys.readouterr()
    # a decoder fine-tune needs weights to start from; a missing init file is named
    assert main([*args, "--out", str(tmp_path / "c"), "--set", "train_encoder=false"]) == 2
    assert "set init" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "c"), "--set", "init=nowhere.safetensors"]) == 2
    assert "nowhere.safetensors" in capsys.readouterr().err


def test_encoder_trained_with_the_shared_decoder_then_the_shipped_decoder(tmp_path: Path) -> None:
    """The two-run VAE recipe: encoder + cheap `SharedDecoder`, then a fresh per-frame decoder on
    the frozen encoder; the result has the preset's decoder and the first run's latent space."""
    args = ["vae", *FAST, "--set", "stats_clips=2", "--set", "batch_size=2", "--max-steps", "2"]
    assert main([*args, "--out", str(tmp_path / "a"), "--set", "decoder=shared"]) == 0
    first = load_file(tmp_path / "a" / "vae" / "vae.safetensors")
    tune = ["--set", f"init={tmp_path / 'a' / 'vae' / 'vae.safetensors'}", "--set", "train_encoder=false"]
    assert main([*args, "--out", str(tmp_path / "b"), *tune, "--set", "init_decoder=false"]) == 0
    second = load_file(tmp_path / "b" / "vae" / "vae.safetensors")
    shipped = TinyVAE(training_preset("test").vae)  # type: ignore[arg-type]
    shipped.load_state_dict(second, strict=True)  # the preset's decoder
    assert set(first) != set(second)  # the shared decoder's parameters are gone
    for key in first:
        if not key.startswith("decoder."):
            assert torch.equal(first[key], second[key]), key


def test_all_stages_run_in_order_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = ["--out", str(tmp_path), *FAST]
    assert main(["vae", *out, "--max-steps", "3", "--set", "stats_clips=2"]) == 0
    assert main(["teacher", *out, "--max-steps", "3", "--set", "dataset_clips=8", "--set", "eval_prompts=2",
                 "--set", "eval_steps=4", "--set", "temporal_weight=0.5"]) == 0  # fmt: skip
    teacher_log = (tmp_path / "teacher" / "metrics.jsonl").read_text().splitlines()
    temporal = [json.loads(line)["temporal"] for line in teacher_log]  # logged beside the flow loss
    assert temporal and min(temporal) >= 0.0 and max(temporal) > 0.0
    assert main(["ode", *out, "--max-steps", "3", "--set", "trajectories=4", "--set", "eval_prompts=2",
                 "--set", "eval_chunks=2", "--set", "causal_trajectories=true"]) == 0  # fmt: skip
    # every window the stream's opening: the first two chunks after their first latent frame
    opening = ["--set", "dmd_context_fraction=0", "--set", "dmd_opening_fraction=1"]
    sf = ["--max-steps", "3", "--set", "eval_prompts=2", "--set", "eval_chunks=2", *opening]
    assert main(["self-forcing", *out, *sf]) == 0
    metrics = (tmp_path / "self-forcing" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in metrics]
    assert logged and all(row["opening"] == 1 and row["chunks"] == 2 for row in logged)
    # the ode stage resumes without regenerating its trajectories
    shards = sorted((tmp_path / "ode" / "trajectories").glob("*.safetensors"))
    ode = [
        "--set",
        "trajectories=4",
        "--set",
        "eval_prompts=2",
        "--set",
        "eval_chunks=2",
        "--set",
        "causal_trajectories=true",
    ]
    assert main(["ode", *out, "--max-steps", "5", "--resume", *ode]) == 0
    assert sorted((tmp_path / "ode" / "trajectories").glob("*.safetensors")) == shards
    assert _steps(tmp_path / "ode" / "metrics.jsonl")[-1] == 5
    capsys.readouterr()
    # loss curves: one PNG per stage that logged (the teacher's temporal term is 0 on image
    # batches, which a log axis leaves out)
    assert main(["plot", "--out", str(tmp_path), "--dest", str(tmp_path / "img")]) == 0
    plots = {p.name for p in (tmp_path / "img").glob("*.png")}
    assert plots >= {"train_teacher.png", "train_self_forcing.png"}
    capsys.readouterr()
    dest = tmp_path / "weights"
    assert main(["export", "--out", str(tmp_path), "--preset", "test", "--dest", str(dest)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert {Path(p).name for p in written.values()} == {
        "dit.safetensors",
        "vae.safetensors",
        "teacher.safetensors",
        "manifest.json",
    }
    from engine.generator import Generator
    from engine.train.models import training_preset

    gen = Generator.from_config(training_preset("test"))
    gen.load_weights(dest)
    assert gen.open("a red circle moving left", seed=0).step().num_frames == 12
    # continuing from the exported weights: the released teacher is adopted as it is (no steps:
    # the stage only encodes its dataset), the student starts from the released one, and the
    # next export keeps the manifest it replaces as the history of the release
    adopt = ["--max-steps", "0", "--set", f"init={dest / 'teacher.safetensors'}", "--set", "eval_prompts=0"]
    skip_eval = ["--set", "eval_prompts=0"]  # the end-of-stage check is optional
    # every world window drawn among the clips whose object wraps in the student's chunk: none of
    # the 8 clips drawn without wraps does (a clear error); 3 of the 8 drawn with wraps do
    context = ["--set", "dmd_context_fraction=1", "--set", "dmd_world_context_fraction=1"]
    wrap = [*context, "--set", "dmd_world_wrap_fraction=1"]
    assert main(["self-forcing", *out, "--max-steps", "1", *skip_eval, *wrap]) == 2
    assert "encode it with the teacher's wrap_fraction > 0" in capsys.readouterr().err
    assert main(["teacher", *out, "--set", "dataset_clips=8", "--set", "wrap_fraction=1", *adopt]) == 0
    assert not (tmp_path / "teacher" / "metrics.jsonl").exists()
    released = ["--set", f"init={dest / 'dit.safetensors'}"]
    released_dit = load_file(dest / "dit.safetensors")
    capsys.readouterr()
    # every window scored after a clean chunk: the world's (its clip's first chunk, its object
    # leaving the frame), with the real score's scales of the wrap windows and the regression
    # onto the world's next chunk at weight 2 and the GAN direction at weight 0.5 beside the DMD
    # surrogate
    scored: list[tuple[float, float]] = []
    losses: list[float] = []

    def scoring(*args: Any, **kwargs: Any) -> Any:
        call = inspect.signature(dmd_loss).bind(*args, **kwargs)
        call.apply_defaults()
        given = call.arguments
        scored.append(given["settings"].scales(given["context_frames"], given["wrap"]))
        loss, stats = dmd_loss(*args, **kwargs)
        losses.append(loss.item())
        return loss, stats

    def regressing(*args: Any) -> Any:
        loss, gap = world_regression_loss(*args)
        losses[-1] += 2 * loss.item()
        return loss, gap

    def pushing(*args: Any) -> Any:
        push, stats = adversarial_direction(*args)
        losses[-1] += 0.5 * direction_loss(args[2], push).item()
        return push, stats

    monkeypatch.setattr(self_forcing, "dmd_loss", scoring)
    monkeypatch.setattr(self_forcing, "world_regression_loss", regressing)
    monkeypatch.setattr(self_forcing, "adversarial_direction", pushing)
    wrap_scales = ["--set", "wrap_guidance=6", "--set", "wrap_motion_guidance=0"]
    regression = ["--set", "world_regression=2", "--set", "adversarial=0.5"]
    world_run = ["--max-steps", "2", *released, *skip_eval, *wrap, *wrap_scales, *regression]
    assert main(["self-forcing", *out, *world_run]) == 0
    assert scored == [(6.0, 0.0)] * 2  # not the context windows' CFG 4
    assert json.loads(capsys.readouterr().out)["eval"] is None
    logged = [
        json.loads(line) for line in (tmp_path / "self-forcing" / "metrics.jsonl").read_text().splitlines()
    ]
    assert logged[-1]["world"] == 1 and logged[-1]["wrap"] == 1 and logged[-1]["chunks"] == 2
    assert [row["loss"] for row in logged] == pytest.approx(losses, rel=1e-5)
    assert all(row["world_gap"] > 0 and row["gan_raw"] > 0 and row["loss_d"] > 0 for row in logged)
    state = torch.load(tmp_path / "self-forcing" / "checkpoint.pt", weights_only=False)
    backbone, head = state["optimizers"]["fake"]["param_groups"]  # the head at lr_head, 10x lr_fake
    assert head["lr"] == pytest.approx(10 * backbone["lr"]) and backbone["lr"] > 0
    assert main(["export", "--out", str(tmp_path), "--preset", "test", "--dest", str(dest)]) == 0
    manifest = json.loads((dest / "manifest.json").read_text())
    adopted = {"steps": 0, "minutes": 0.0, "init": str(dest / "teacher.safetensors")}
    assert manifest["stages"]["teacher"] == adopted
    assert manifest["stages"]["self-forcing"]["steps"] == 2
    assert manifest["continued_from"]["stages"]["self-forcing"]["steps"] == 3
    # the stage kept the weights it started from: `--blend` exports the student part of the way
    start = load_file(tmp_path / "self-forcing" / "start.safetensors")
    assert start.keys() == released_dit.keys()
    assert all(torch.equal(start[k], v.float()) for k, v in released_dit.items())
    student = load_file(tmp_path / "self-forcing" / "student.safetensors")
    moved = [k for k in student if not torch.equal(student[k], start[k])]
    assert moved  # two steps changed the student
    half = tmp_path / "half"
    export = ["export", "--out", str(tmp_path), "--preset", "test", "--dest", str(half)]
    assert main([*export, "--blend", "0.5"]) == 0
    halfway = load_file(half / "dit.safetensors")
    for k in moved:
        torch.testing.assert_close(halfway[k], ((start[k] + student[k]) / 2).half())
    assert json.loads((half / "manifest.json").read_text())["blend"] == 0.5
    capsys.readouterr()
    assert main([*export, "--blend", "1.5"]) == 2
    assert "blend must be in [0, 1]" in capsys.readouterr().err
    # stochastic weight averaging from the start of the run: the stage's student is the running
    # mean of every step's student, kept across a resume; the EMA goes beside it
    averaged = [*released, *skip_eval, "--set", "average_from=0"]
    assert main(["self-forcing", *out, "--max-steps", "2", *averaged]) == 0
    first = torch.load(tmp_path / "self-forcing" / "checkpoint.pt", weights_only=False)
    assert first["extra"] == {"averaged": 2}
    assert main(["self-forcing", *out, "--max-steps", "3", "--resume", *averaged]) == 0
    last = torch.load(tmp_path / "self-forcing" / "checkpoint.pt", weights_only=False)
    assert last["extra"] == {"averaged": 3}
    mean = last["models"]["average"]
    student = load_file(tmp_path / "self-forcing" / "student.safetensors")
    ema = load_file(tmp_path / "self-forcing" / "ema.safetensors")
    for k, v in mean.items():
        expected = (2 * first["models"]["average"][k] + last["models"]["student"][k]) / 3
        torch.testing.assert_close(v, expected)
        assert torch.equal(student[k], v) and torch.equal(ema[k], last["models"]["ema"][k])
    assert any(not torch.equal(mean[k], last["models"]["student"][k]) for k in mean)
    assert main(["self-forcing", *out, "--max-steps", "1", *released, *skip_eval]) == 0
    assert not (tmp_path / "self-forcing" / "ema.safetensors").exists()  # the EMA is the student


def test_release_history_is_kept_only_when_continuing_from_the_replaced_weights(tmp_path: Path) -> None:
    from engine.train.export import _continues

    dest = tmp_path / "weights"
    assert _continues({"stages": {"teacher": {"init": str(dest / "dit.safetensors")}}}, dest)
    # the decoder run of a from-scratch recipe starts from the encoder run, not from a release
    other_run = {"vae": {"init": str(tmp_path / "enc" / "vae" / "vae.safetensors")}, "teacher": {}}
    assert not _continues({"stages": other_run}, dest)
