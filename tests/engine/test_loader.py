"""Checkpoint loading: formats, nesting, prefixes and the one clear mismatch error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.config import DiTConfig
from engine.loader import CheckpointMismatchError, load_into, read_checkpoint, strip_prefixes
from engine.model.dit import CausalDiT

CFG = DiTConfig(text_len=4, dim=16, ffn_dim=32, text_dim=8, num_heads=2, num_layers=2)


def model(seed: int) -> CausalDiT:
    torch.manual_seed(seed)
    return CausalDiT(CFG)


def equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("prefix", ["model.", "module.", "_fsdp_wrapped_module.", "module.model.", ""])
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_prefixes_and_formats(tmp_path: Path, prefix: str, suffix: str) -> None:
    src = model(1)
    state = {prefix + k: v for k, v in src.state_dict().items()}
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    dst = model(2)
    assert not equal(src, dst)
    load_into(dst, read_checkpoint(path))
    assert equal(src, dst)


def test_generator_ema_is_preferred_over_generator(tmp_path: Path) -> None:
    ema, raw = model(1), model(2)
    path = tmp_path / "self_forcing_dmd.pt"
    torch.save(
        {
            "generator": {"model." + k: v for k, v in raw.state_dict().items()},
            "generator_ema": {"model." + k: v for k, v in ema.state_dict().items()},
            "critic": {"x": torch.zeros(1)},
        },
        path,
    )
    dst = model(3)
    load_into(dst, read_checkpoint(path))
    assert equal(dst, ema)


@pytest.mark.parametrize("outer", ["generator", "model", "state_dict"])
def test_other_nesting_keys(tmp_path: Path, outer: str) -> None:
    src = model(1)
    path = tmp_path / "c.pt"
    torch.save({outer: src.state_dict()}, path)
    dst = model(2)
    load_into(dst, read_checkpoint(path))
    assert equal(src, dst)


def test_mismatch_lists_missing_unexpected_and_shapes() -> None:
    state = dict(model(1).state_dict())
    del state["blocks.1.ffn.0.bias"]
    state["blocks.0.extra.weight"] = torch.zeros(3)
    state["head.head.weight"] = torch.zeros(5, 16)
    with pytest.raises(CheckpointMismatchError) as err:
        load_into(model(2), state, source="bad.pt")
    msg = str(err.value)
    assert "bad.pt does not match the model" in msg
    assert "missing keys (1): blocks.1.ffn.0.bias" in msg
    assert "unexpected keys (1): blocks.0.extra.weight" in msg
    assert "head.head.weight: checkpoint [5, 16] vs model [64, 16]" in msg
    assert err.value.missing == ["blocks.1.ffn.0.bias"]


def test_optional_keys_may_be_absent() -> None:
    state = {k: v for k, v in model(1).state_dict().items() if "norm3" not in k}
    load_into(model(2), state, optional=("norm3",))
    with pytest.raises(CheckpointMismatchError):
        load_into(model(2), state)


def test_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        read_checkpoint(path)


def test_strip_prefixes_repeated() -> None:
    assert strip_prefixes("module._fsdp_wrapped_module.model.blocks.0.q") == "blocks.0.q"
    assert strip_prefixes("blocks.0.model.q") == "blocks.0.model.q"
