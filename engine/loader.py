"""Checkpoint loading for the DiT: file formats, nesting, key prefixes, strict matching.

Accepted files: `.safetensors`, `.pt` / `.pth` (torch.save). Accepted layouts: a dict with
`generator_ema` (preferred, the EMA weights Self Forcing's demo uses), `generator`, `model`,
`state_dict`, or a bare state dict. Key prefixes `model.`, `module.` and
`_fsdp_wrapped_module.` are stripped wherever they occur at the front (possibly repeated).
Loading is strict; on mismatch one `CheckpointMismatchError` lists every missing, unexpected
and wrongly shaped key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

PREFIXES = ("model.", "module.", "_fsdp_wrapped_module.")
NESTED_KEYS = ("generator_ema", "generator", "model", "state_dict")


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model."""

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        source: str = "checkpoint",
    ) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f"{source} does not match the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
        if mismatched:
            lines.append(f"  wrongly shaped keys ({len(mismatched)}):")
            lines += [f"    {k}: checkpoint {list(got)} vs model {list(want)}" for k, got, want in mismatched]
        super().__init__("\n".join(lines))


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a file and return the DiT state dict inside it (unprefixed keys)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: object = load_file(str(path))
    elif path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"unsupported checkpoint format {path.suffix!r} (use .safetensors, .pt or .pth)")
    return extract_state_dict(raw)


def extract_state_dict(raw: object) -> dict[str, torch.Tensor]:
    """Unwrap nesting (generator_ema > generator > model > state_dict) and strip prefixes."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"checkpoint is a {type(raw).__name__}, expected a mapping")
    level: Mapping[str, object] = raw
    while True:
        nested = next((level[k] for k in NESTED_KEYS if isinstance(level.get(k), Mapping)), None)
        if not isinstance(nested, Mapping):
            break
        level = nested
    state = {}
    for key, value in level.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        state[strip_prefixes(str(key))] = value
    return state


def strip_prefixes(key: str, prefixes: Iterable[str] = PREFIXES) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    optional: Iterable[str] = (),
    source: str = "checkpoint",
) -> None:
    """Copy `state` into `module` strictly.

    Keys matching any substring in `optional` may be absent from the checkpoint (they keep
    their initial values, e.g. a zero-initialised sparse-attention gate).
    """
    own = module.state_dict()
    optional = tuple(optional)
    missing = sorted(k for k in own if k not in state and not any(o in k for o in optional))
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [
        (k, tuple(state[k].shape), tuple(own[k].shape))
        for k in sorted(own)
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched, source)
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)
