"""The engine reproduces the public Self Forcing implementation's golden tensors (fp32, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.golden import TOLERANCE, GoldenRun, verify_golden

GOLDEN_DIR = Path(__file__).parent.parent / "golden"


def golden_files() -> list[Path]:
    files = sorted(GOLDEN_DIR.glob("*.safetensors"))
    extra = os.environ.get("ROLLCAST_GOLDEN_DIR")
    if extra:
        files += sorted(Path(extra).glob("*.safetensors"))
    return files


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.stem)
def test_golden_file_reproduced(path: Path) -> None:
    report = verify_golden(path)
    assert report.errors, "nothing was compared"
    worst = max(report.errors.items(), key=lambda kv: kv[1])
    assert report.ok, f"{path.name}: worst tensor {worst[0]} rel err {worst[1]:.3e} > {TOLERANCE}"
    # the main run's outputs must all have been compared, not only a subset
    run = GoldenRun.load(path)
    expected = {k for k in run.tensors if k.startswith("outputs/") and not k.startswith("outputs/kv")}
    assert expected <= set(report.errors), sorted(expected - set(report.errors))


def test_shipped_files_cover_both_cache_modes() -> None:
    names = {p.stem for p in golden_files()}
    assert {"self_forcing_tiny_A", "self_forcing_tiny_C"} <= names


def test_verifier_detects_a_wrong_weight(tmp_path: Path) -> None:
    """A verifier that cannot fail proves nothing: perturb one weight and expect FAIL."""
    from safetensors.torch import save_file

    src = GOLDEN_DIR / "self_forcing_tiny_C.safetensors"
    run = GoldenRun.load(src)
    tensors = dict(run.tensors)
    key = "state_dict/model.blocks.1.self_attn.o.weight"
    tensors[key] = tensors[key] + 1e-2 * torch.randn_like(tensors[key])
    bad = tmp_path / "perturbed.safetensors"
    save_file(tensors, str(bad))
    (tmp_path / "perturbed.json").write_text(src.with_suffix(".json").read_text())
    report = verify_golden(bad)
    assert not report.ok
    assert report.errors["outputs/video"] > TOLERANCE
    # what does not depend on the weights is still exact: the failure is pinned, not global
    assert report.errors["outputs/warped_timesteps"] == 0.0


def test_cli_exit_codes(tmp_path: Path) -> None:
    good = GOLDEN_DIR / "self_forcing_tiny_C.safetensors"
    cmd = [sys.executable, "-m", "server.cli", "verify-reference", "--no-vae", str(good)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outputs/video" in done.stdout and "PASS" in done.stdout
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "nope.safetensors")], capture_output=True, text=True)
    assert missing.returncode == 1
