"""Every benchmark script imports and answers `--help` (the benches run outside CI, so this is
what keeps a refactor of the engine from breaking one unnoticed)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest

import bench

SCRIPTS = sorted(
    m.name
    for m in pkgutil.iter_modules(bench.__path__)
    if hasattr(importlib.import_module(f"bench.{m.name}"), "main")
)


def test_the_benches_are_found() -> None:
    assert {"realtime", "size_drift", "drift_prompts", "world_windows"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_bench_answers_help(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", [f"bench/{name}.py", "--help"])
    with pytest.raises(SystemExit) as done:
        importlib.import_module(f"bench.{name}").main()
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:"), out[:200]
    assert "--help" in out
