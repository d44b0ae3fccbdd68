"""Stage configuration: typed dataclasses filled from TOML files (tomllib) plus CLI overrides.

Each stage defines a frozen dataclass of its knobs with defaults; `load_config` reads a TOML file
of flat `key = value` pairs (unknown keys are an error, so a typo never silently does nothing),
converts lists to tuples and applies overrides. The shipped defaults are
`engine/train/configs/<stage>.toml`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

CONFIG_DIR = Path(__file__).parent / "configs"
T = TypeVar("T")


@dataclass(frozen=True)
class RunConfig:
    """Knobs every stage has: reproducibility, CPU threads, budget, cadence of logs/checkpoints."""

    seed: int = 0
    threads: int = 2
    max_minutes: float = 55.0  # wall-clock budget of the stage (it always ends within 60 min)
    max_steps: int = 10_000
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    lr: float = 1e-4
    lr_min_ratio: float = 0.1  # cosine decay to lr * lr_min_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    batch_size: int = 4
    # bf16 autocast for the forward passes (weights, gradients and optimiser state stay fp32),
    # only where the CPU has native bf16 (`run.native_bf16`; emulated bf16 is 9-75x slower):
    # ~2.3x faster DiT steps on an AVX512-BF16 CPU (docs/models.md, "Training recipe")
    mixed_precision: bool = True
    # weights (safetensors) to start the stage's trained model from instead of its default
    # (vae, teacher: fresh; ode student: the teacher; self-forcing student: the ode student),
    # e.g. to continue from the shipped release: init = "engine/weights/tiny/dit.safetensors"
    init: str = ""


def default_config_path(stage: str) -> Path:
    return CONFIG_DIR / f"{stage.replace('-', '_')}.toml"


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Build `cls` from defaults, then the TOML file at `path`, then `overrides`."""
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            values.update(tomllib.load(fh))
    values.update(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys in {path or 'overrides'}: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    converted = {k: _convert(v, hints[k]) for k, v in values.items()}
    return cls(**converted)


def _convert(value: Any, hint: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings (values parsed as TOML scalars, else kept as strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
