"""Self-attention KV cache of one stream (global or rolling with an attention sink).

Layout per layer: k, v of shape [B, capacity, heads, head_dim]; keys are stored already rotated
by RoPE (at their absolute frame positions) and are never re-rotated.

Every model call on a chunk first *writes* the chunk's own K/V into the cache and then attends
to all valid cached tokens (itself included). Re-running the same chunk (the next denoising step,
or the timestep-0 refresh) overwrites the same slots. In rolling mode, when a new chunk does not
fit, the oldest non-sink tokens are evicted: the rest shift left behind the sink and the new
chunk is written at the end. This is exactly the reference's bookkeeping (`global_end`: tokens
written so far in stream terms; `local_end`: fill position in the buffer), done once per model
call for all layers instead of once per layer.

Memory is fixed at construction, so an endless stream never grows it; the per-chunk cost of an
eviction is one shift of at most `capacity` tokens per layer.

With `rope_positions="window"` the cache also keeps the sink's keys before RoPE, and after each
eviction re-rotates them (exactly, from the float64 angles) to the frames just before the
window's first frame. Keys elsewhere are never re-rotated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.config import CacheConfig
from engine.model.rope import apply_rope, rope_angles, rope_rotation


class CacheFullError(RuntimeError):
    """A global-mode cache has no room for another chunk (the video reached its length)."""


@dataclass(frozen=True)
class WritePlan:
    """Where a model call writes its K/V and which cached range it attends to."""

    start: int  # first buffer slot written
    end: int  # one past the last slot written (= new local_end)
    attend_start: int  # first slot attended (attention covers [attend_start, end))


class KVCache:
    """K/V buffers of all layers for `batch` streams that advance together."""

    def __init__(
        self,
        config: CacheConfig,
        *,
        num_layers: int,
        tokens_per_frame: int,
        heads: int,
        head_dim: int,
        batch: int = 1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        grid: tuple[int, int] | None = None,
    ) -> None:
        """grid: (rows, cols) of a frame's tokens; needed for rope_positions="window"."""
        self.config = config
        self.tokens_per_frame = tokens_per_frame
        self.head_dim = head_dim
        self.capacity = config.max_frames * tokens_per_frame
        self.sink_tokens = config.sink_frames * tokens_per_frame if config.mode == "rolling" else 0
        self.batch = batch
        shape = (batch, self.capacity, heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.global_end = 0
        self.local_end = 0
        # frames of each chunk held, in buffer order (sink part split off): the chunk structure
        # that sparse attention tiles by
        self.segments: list[int] = []
        # window positions: pre-RoPE sink keys, re-rotated after every eviction
        self.grid = grid
        self.sink_raw: list[torch.Tensor] = []
        if config.rope_positions == "window" and self.sink_tokens:
            if grid is None or grid[0] * grid[1] != tokens_per_frame:
                raise ValueError("rope_positions='window' needs the token grid (rows, cols)")
            sink_shape = (batch, self.sink_tokens, heads, head_dim)
            self.sink_raw = [torch.zeros(sink_shape, dtype=dtype, device=device) for _ in range(num_layers)]

    # -- bookkeeping -------------------------------------------------------------------------

    def plan_write(self, current_start: int, num_tokens: int) -> WritePlan:
        """Reserve slots for a call on tokens [current_start, current_start + num_tokens).

        Performs the rolling eviction when needed; must be called once per model call before
        the layers write (`write`) and attend (`keys`/`values`).
        """
        current_end = current_start + num_tokens
        advance = current_end - self.global_end
        if advance < 0 or current_start > self.global_end:
            raise ValueError(
                f"chunk at tokens [{current_start}, {current_end}) does not continue the cache "
                f"(written up to {self.global_end})"
            )
        local_end = self.local_end + advance
        if local_end > self.capacity:
            if self.config.mode == "global":
                raise CacheFullError(
                    f"global KV cache holds {self.config.max_frames} frames; the stream reached its end"
                )
            evicted = local_end - self.capacity
            self._evict(evicted)
            self._drop_segment_frames(evicted // self.tokens_per_frame)
            local_end -= evicted
            if self.sink_raw:
                window_start = current_end - (local_end - self.sink_tokens)  # stream token at slot `sink`
                self._place_sink(window_start // self.tokens_per_frame - self.config.sink_frames)
        if advance:
            self._append_segment(num_tokens // self.tokens_per_frame)
        self.global_end = current_end
        self.local_end = local_end
        window = self.config.max_attention_tokens
        attend_start = 0 if window is None else max(0, local_end - window)
        return WritePlan(start=local_end - num_tokens, end=local_end, attend_start=attend_start)

    @property
    def sink_segments(self) -> int:
        """How many leading segments lie in the sink."""
        frames, count = 0, 0
        sink = self.sink_tokens // self.tokens_per_frame
        for f in self.segments:
            if frames + f > sink:
                break
            frames += f
            count += 1
        return count

    def _append_segment(self, frames: int) -> None:
        sink = self.sink_tokens // self.tokens_per_frame
        held = sum(self.segments)
        if held < sink < held + frames:  # a chunk straddling the sink boundary: split it
            self.segments += [sink - held, held + frames - sink]
        else:
            self.segments.append(frames)

    def _drop_segment_frames(self, frames: int) -> None:
        """Remove the oldest `frames` frames after the sink from the segment list."""
        i = self.sink_segments
        while frames > 0:
            take = min(frames, self.segments[i])
            self.segments[i] -= take
            frames -= take
            if self.segments[i] == 0:
                del self.segments[i]

    def seek(self, global_token: int) -> None:
        """Continue the stream at `global_token` (the next chunk is appended after the filled
        slots). Only for rebuilding a cache from stored context chunks whose frame positions
        have gaps (a rolling window behind its sink)."""
        if global_token < self.global_end:
            raise ValueError("cannot seek backwards")
        self.global_end = global_token

    def _evict(self, evicted: int) -> None:
        sink = self.sink_tokens
        rolled = self.local_end - evicted - sink
        if rolled < 0:
            raise ValueError("rolling cache is too small for one chunk beside the sink")
        for buf in (*self.k, *self.v):
            buf[:, sink : sink + rolled] = buf[:, sink + evicted : sink + evicted + rolled].clone()

    def _place_sink(self, first_frame: int) -> None:
        """Rotate the sink keys as if the sink frames were at frames first_frame, first_frame+1..."""
        assert self.grid is not None
        frames = torch.arange(first_frame, first_frame + self.config.sink_frames, device=self.k[0].device)
        rotation = rope_rotation(rope_angles(self.head_dim, frames, *self.grid)).unsqueeze(0)
        for k, raw in zip(self.k, self.sink_raw, strict=True):
            k[:, : self.sink_tokens] = apply_rope(raw, rotation)

    # -- data --------------------------------------------------------------------------------

    def write(
        self, layer: int, plan: WritePlan, k: torch.Tensor, v: torch.Tensor, k_raw: torch.Tensor | None = None
    ) -> None:
        """Store a call's rotated keys and values, k/v: [batch, num_tokens, H, D].

        k_raw (the keys before RoPE) is kept for the sink slots when positions are "window".
        """
        self.k[layer][:, plan.start : plan.end] = k
        self.v[layer][:, plan.start : plan.end] = v
        if self.sink_raw and plan.start < self.sink_tokens:
            if k_raw is None:
                raise ValueError("window positions need the pre-RoPE keys of sink slots")
            n = min(plan.end, self.sink_tokens) - plan.start
            self.sink_raw[layer][:, plan.start : plan.start + n] = k_raw[:, :n]

    def keys(self, layer: int, plan: WritePlan) -> torch.Tensor:
        return self.k[layer][:, plan.attend_start : plan.end]

    def values(self, layer: int, plan: WritePlan) -> torch.Tensor:
        return self.v[layer][:, plan.attend_start : plan.end]

    @property
    def frames_cached(self) -> int:
        return self.local_end // self.tokens_per_frame

    def reset(self) -> None:
        self.global_end = 0
        self.local_end = 0
        self.segments = []

    def state(self) -> dict[str, torch.Tensor]:
        """Filled part of every layer's buffers plus the two indices (for exact snapshots)."""
        out: dict[str, torch.Tensor] = {
            "global_end": torch.tensor(self.global_end),
            "local_end": torch.tensor(self.local_end),
            "segments": torch.tensor(self.segments, dtype=torch.int64),
        }
        for i, (k, v) in enumerate(zip(self.k, self.v, strict=True)):
            out[f"k.{i}"] = k[:, : self.local_end].clone()
            out[f"v.{i}"] = v[:, : self.local_end].clone()
        for i, raw in enumerate(self.sink_raw):
            out[f"sink_raw.{i}"] = raw.clone()
        return out

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.global_end = int(state["global_end"])
        self.local_end = int(state["local_end"])
        self.segments = [int(f) for f in state["segments"].tolist()]
        for i, (k, v) in enumerate(zip(self.k, self.v, strict=True)):
            k[:, : self.local_end] = state[f"k.{i}"].to(k)
            v[:, : self.local_end] = state[f"v.{i}"].to(v)
        for i, raw in enumerate(self.sink_raw):
            raw.copy_(state[f"sink_raw.{i}"])
