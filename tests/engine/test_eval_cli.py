"""The evaluator's command line (wired into `rollcast eval` by the lead)."""

from __future__ import annotations

import argparse
import json

import pytest

from engine.eval import cli


def test_validate_prints_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--validate", "4", "--conditions", "clean,mild", "--defects", "2"]) == 0
    out = capsys.readouterr().out
    assert "Per-attribute accuracy" in out and "clean/heldout" in out and "Defect detection" in out
    assert "100.0%" in out


def test_validate_json(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["--validate", "2", "--conditions", "clean", "--defects", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    acc = data["validation"]["accuracy"]["clean"]["accuracy"]
    assert acc["colour"] == 1.0 and data["validation"]["clips"] == 2
    path = tmp_path / "r.json"
    assert cli.main(["--validate", "2", "--conditions", "clean", "--defects", "0", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["validation"]["clips"] == 2


def test_subparser_wiring_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="rollcast")
    sub = parser.add_subparsers(dest="cmd")
    cli.add_arguments(sub.add_parser("eval"))
    args = parser.parse_args(["eval", "--validate", "1", "--conditions", "bogus"])
    assert cli.run(args) == 2
    assert cli.run(parser.parse_args(["eval"])) == 2
    capsys.readouterr()
