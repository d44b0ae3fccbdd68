"""Configuration of trainable block-sparse attention (VSA) and its training sparsity schedule.

The config is a plain frozen value (no tensors) so that it can live inside `GeneratorConfig`,
be hashed, compared and serialised with `dataclasses.asdict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.sparse.tiles import DEFAULT_TILE, TileShape, check_tile


@dataclass(frozen=True)
class VSAConfig:
    """How the self-attention of the DiT runs sparse.

    Defaults: disabled (a dense checkpoint runs dense until it has been fine-tuned with VSA);
    target sparsity 0.9; no forced tiles (pure top-K of the coarse scores, as in the VSA paper:
    the budget is exactly what `sparsity` says). Forced tiles are *added on top* of the K
    scored tiles; see `docs/models.md` for the cost (one Wan chunk is 78 tiles, i.e. more than
    the whole K = 55 budget at sparsity 0.9 with 7 visible chunks).

    Ramp (training): dense for `ramp_warmup_steps` steps, then the sparsity steps up by
    `ramp_increment` every `ramp_interval` steps until the target. `ramp_interval = 0` turns the
    ramp off (target from step 0).
    """

    enabled: bool = False
    sparsity: float = 0.9  # fraction of visible key tiles skipped by the fine stage
    layer_sparsity: tuple[float, ...] | None = None  # per-layer target; overrides `sparsity`
    tile: TileShape = DEFAULT_TILE  # (frames, rows, cols), at most 64 tokens
    include_own_chunk: bool = False  # always attend every tile of the query's own chunk
    include_sink: bool = False  # always attend every tile of the sink chunks
    ramp_warmup_steps: int = 0
    ramp_interval: int = 0
    ramp_increment: float = 0.1

    def __post_init__(self) -> None:
        check_tile(self.tile)
        for s in (self.sparsity, *(self.layer_sparsity or ())):
            if not 0.0 <= s < 1.0:
                raise ValueError(f"sparsity must be in [0, 1), got {s}")
        if self.ramp_warmup_steps < 0 or self.ramp_interval < 0:
            raise ValueError("ramp steps must be >= 0")
        if self.ramp_interval > 0 and self.ramp_increment <= 0:
            raise ValueError("ramp_increment must be > 0 when the ramp is on")

    def target(self, layer: int | None = None) -> float:
        """Target sparsity of one layer (`layer=None`: the global target)."""
        if layer is None or self.layer_sparsity is None:
            return self.sparsity
        if not 0 <= layer < len(self.layer_sparsity):
            raise ValueError(f"layer {layer} outside layer_sparsity of length {len(self.layer_sparsity)}")
        return self.layer_sparsity[layer]


def sparsity_at(step: int, config: VSAConfig, layer: int | None = None) -> float:
    """Sparsity to train with at optimiser step `step` (start dense, step up to the target)."""
    target = config.target(layer)
    if config.ramp_interval <= 0:
        return target
    if step < config.ramp_warmup_steps:
        return 0.0
    increments = (step - config.ramp_warmup_steps) // config.ramp_interval + 1
    return min(target, round(increments * config.ramp_increment, 12))


def num_selected(num_visible: int, sparsity: float) -> int:
    """K = ceil((1 - sparsity) * visible tiles), at least 1 and at most `num_visible`.

    The product is nudged down by 1e-9 before the ceiling so that float noise such as
    (1 - 0.8) * 390 = 78.00000000000001 does not cost a whole extra tile.
    """
    if num_visible < 1:
        raise ValueError("no visible key tiles")
    k = math.ceil((1.0 - sparsity) * num_visible - 1e-9)
    return max(1, min(num_visible, k))
