"""Loading Wan VAE weights (`Wan2.1_VAE.pth` layout: a flat state dict without key prefix).

Loading is strict: every parameter must be present with the right shape and nothing else may
be in the file, because a silently half-loaded VAE decodes plausible-looking garbage. The
error lists every missing, unexpected and mis-shaped key so a wrong width or layout is obvious.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from engine.vae.config import VAEConfig
from engine.vae.model import WanVAE

StateDict = Mapping[str, torch.Tensor]


class VAEStateDictError(ValueError):
    """A state dict does not fit the VAE; `missing`, `unexpected`, `mismatched` say how."""

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        source: str = "state dict",
    ) -> None:
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        lines = [f"{source} does not match the Wan VAE:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            parts = [f"{k} (file {list(got)}, model {list(want)})" for k, got, want in mismatched]
            lines.append(f"  mis-shaped keys ({len(mismatched)}): {', '.join(parts)}")
        super().__init__("\n".join(lines))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat tensor dict from `.safetensors` or a torch `.pth`/`.pt` file (on CPU)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return dict(obj)


def infer_config(state: StateDict, **overrides: object) -> VAEConfig:
    """Config with `dim` and `z_dim` read off the weights; other fields default (Wan2.1)."""
    try:
        dim = int(state["encoder.conv1.weight"].shape[0])
        z_dim = int(state["conv2.weight"].shape[0])
    except KeyError as exc:
        raise VAEStateDictError([str(exc.args[0])], [], [], "state dict") from None
    fields: dict[str, object] = {"dim": dim, "z_dim": z_dim}
    fields.update(overrides)
    return VAEConfig(**fields)  # type: ignore[arg-type]


def check_state_dict(model: torch.nn.Module, state: StateDict, source: str = "state dict") -> None:
    """Raise `VAEStateDictError` unless `state` has exactly the model's keys and shapes."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = [
        (k, tuple(state[k].shape), tuple(expected[k].shape))
        for k in sorted(expected)
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise VAEStateDictError(missing, unexpected, mismatched, source)


def load_wan_vae_state_dict(
    source: str | Path | StateDict,
    model: WanVAE | None = None,
    *,
    config: VAEConfig | None = None,
    prefix: str = "",
) -> WanVAE:
    """Load Wan VAE weights strictly and return the model (built if not given).

    source: a path (`.pth`/`.pt`/`.safetensors`) or a dict of tensors. Keys are those of
    `Wan2.1_VAE.pth`; with `prefix`, only keys starting with it are used, prefix removed (e.g.
    "vae_state_dict/" for the golden files). Without `model`, one is built from `config`, or
    from the weights' width and latent channels (`infer_config`). Raises `VAEStateDictError`.
    """
    name = str(source) if isinstance(source, (str, Path)) else "state dict"
    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if model is None:
        model = WanVAE(config if config is not None else infer_config(state))
    check_state_dict(model, state, name)
    model.load_state_dict(state, strict=True)
    return model
