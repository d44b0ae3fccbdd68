"""The causal Wan DiT (`CausalWanModel` of Self Forcing), parameter names as in its checkpoints.

Input and output latents are frame-major [B, F, C, H, W] (as the reference's diffusion wrapper
sees them); inside, a Conv3d patch embedding turns them into tokens in (frame, row, col) order.

Three ways to run it:
- cached (generation): `caches` given; the call's chunk is written into each stream's KV cache
  and attends to the cached context + itself. Several streams (each with its own cache and
  frame position) can share one batched call.
- full sequence, block-causal (training of the causal student): `chunk_frames` given; tokens of
  chunk c see chunks <= c (optionally only the last `window_frames` frames).
- full sequence, bidirectional (the teacher): neither given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from engine.config import DiTConfig
from engine.kv_cache import KVCache
from engine.model.attention import AttentionContext, CacheBinding
from engine.model.block import DiTBlock, Head
from engine.model.layers import sinusoidal_embedding
from engine.model.rope import rope_angles, rope_rotation
from engine.sparse import ChunkLayout, VSAConfig


@dataclass
class PromptKV:
    """Cross-attention keys/values of a prompt for every layer: [(k, v)] with k, v [B, Lt, H, D]."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def batch(self) -> int:
        return self.layers[0][0].shape[0]

    @staticmethod
    def cat(prompts: Sequence[PromptKV]) -> PromptKV:
        if len(prompts) == 1:
            return prompts[0]
        per_layer = zip(*(p.layers for p in prompts), strict=True)
        return PromptKV(
            [(torch.cat([k for k, _ in kvs]), torch.cat([v for _, v in kvs])) for kvs in per_layer]
        )


def block_causal_mask(
    frames: int,
    tokens_per_frame: int,
    chunk_frames: int,
    window_frames: int | None,
    device: torch.device,
    independent_first_frame: bool = False,
) -> torch.Tensor:
    """bool [L, L]: query token sees key token iff key's chunk <= query's chunk (and in window).

    Chunks hold `chunk_frames` frames, or 1 then `chunk_frames` each with an independent first
    frame. The window, as in the reference's training mask, ends at the query chunk's end and
    spans `window_frames` frames (no sink).
    """
    frame = torch.arange(frames, device=device).repeat_interleave(tokens_per_frame)
    shifted = frame - 1 if independent_first_frame else frame
    chunk_end = (shifted.div(chunk_frames, rounding_mode="floor") + 1) * chunk_frames  # frame after the chunk
    if independent_first_frame:
        chunk_end = torch.where(frame == 0, torch.ones_like(frame), chunk_end + 1)
    mask = frame[None, :] < chunk_end[:, None]
    if window_frames is not None:
        mask &= frame[None, :] >= (chunk_end - window_frames)[:, None]
    return mask


def full_sequence_layout(
    grid: tuple[int, int],
    frames: int,
    chunk_frames: int | None,
    window_frames: int | None,
    independent_first_frame: bool,
) -> ChunkLayout:
    """Chunk structure of a full-sequence pass for sparse attention (mirrors block_causal_mask).

    Bidirectional (chunk_frames None): one chunk of all frames, everything visible.
    """
    if chunk_frames is None:
        return ChunkLayout(grid, (frames,), (0,), ((True,),))
    sizes = [1] if independent_first_frame else []
    rest = frames - len(sizes)
    sizes += [chunk_frames] * (rest // chunk_frames) + ([rest % chunk_frames] if rest % chunk_frames else [])
    ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    starts = [e - s for e, s in zip(ends, sizes, strict=True)]
    visible = tuple(
        tuple(
            j <= c and (window_frames is None or starts[j] >= ends[c] - window_frames)
            for j in range(len(sizes))
        )
        for c in range(len(sizes))
    )
    return ChunkLayout(grid, tuple(sizes), tuple(range(len(sizes))), visible)


def cached_layout(cache: KVCache, attend_start: int, grid: tuple[int, int]) -> ChunkLayout:
    """Chunk structure of the keys a cached call attends to: the cache's segments (the current
    chunk last), sink segments first."""
    if attend_start:
        raise ValueError("sparse attention attends to the whole cache (max_attention_tokens must be unset)")
    *cached, current = cache.segments
    return ChunkLayout.cached(grid, cached, chunk_frames=current, sink_chunks=cache.sink_segments)


class CausalDiT(nn.Module):
    def __init__(self, cfg: DiTConfig, sparse: VSAConfig | None = None) -> None:
        """sparse: VSA settings; when enabled every self-attention gets a `gate_compress`."""
        super().__init__()
        self.cfg = cfg
        self.sparse = sparse if sparse is not None and sparse.enabled else None
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList([DiTBlock(cfg, sparse) for _ in range(cfg.num_layers)])
        self.head = Head(cfg)

    # -- prompt ------------------------------------------------------------------------------

    def encode_prompt(self, text: torch.Tensor) -> PromptKV:
        """text [B, Lt, text_dim] (zero-padded rows allowed) -> per-layer cross-attention K/V."""
        if text.shape[1] < self.cfg.text_len:
            pad = text.new_zeros(text.shape[0], self.cfg.text_len - text.shape[1], text.shape[2])
            text = torch.cat([text, pad], dim=1)
        context = self.text_embedding(text)
        return PromptKV([block.cross_attn.context_kv(context) for block in self._blocks()])

    # -- forward -----------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,  # [B, F, C, H, W]
        t: torch.Tensor,  # [B, F] timesteps (float)
        prompt: PromptKV,
        *,
        start_frames: Sequence[int] = (0,),
        caches: Sequence[KVCache] | None = None,
        chunk_frames: int | None = None,
        window_frames: int | None = None,
        independent_first_frame: bool = False,
        sparsity: float | None = None,
    ) -> torch.Tensor:
        """Returns the flow prediction [B, F, C, H, W] (same dtype as x).

        sparsity: overrides the configured VSA sparsity for this call (training ramp).
        """
        cfg = self.cfg
        b, frames = x.shape[:2]
        tokens = self.patch_embedding(x.permute(0, 2, 1, 3, 4))  # [B, dim, F', h, w]
        grid_f, grid_h, grid_w = tokens.shape[2:]
        tokens = tokens.flatten(2).transpose(1, 2)  # [B, L, dim]

        e = self.time_embedding(sinusoidal_embedding(cfg.freq_dim, t.flatten()).type_as(tokens))  # [B*F, dim]
        e0 = self.time_projection(e).unflatten(1, (6, cfg.dim)).unflatten(0, (b, frames))  # [B, F, 6, dim]

        ctx = self._attention_context(
            b,
            grid_f,
            grid_h,
            grid_w,
            tokens.device,
            start_frames,
            caches,
            chunk_frames,
            window_frames,
            independent_first_frame,
        )
        ctx.sparsity = sparsity
        for layer, block in enumerate(self._blocks()):
            tokens = block(tokens, e0, prompt.layers[layer], layer, ctx)

        out = self.head(tokens, e.unflatten(0, (b, frames)).unsqueeze(2))  # [B, F, S, p*C]
        return self._unpatchify(out, (grid_f, grid_h, grid_w)).permute(0, 2, 1, 3, 4)

    def _attention_context(
        self,
        batch: int,
        frames: int,
        height: int,
        width: int,
        device: torch.device,
        start_frames: Sequence[int],
        caches: Sequence[KVCache] | None,
        chunk_frames: int | None,
        window_frames: int | None,
        independent_first_frame: bool,
    ) -> AttentionContext:
        tokens_per_frame = height * width
        num_tokens = frames * tokens_per_frame
        group_sizes = [c.batch for c in caches] if caches is not None else [batch]
        if len(start_frames) != len(group_sizes) or sum(group_sizes) != batch:
            raise ValueError("start_frames/caches do not match the batch")
        rotations = []
        for start in sorted(set(start_frames)):
            positions = torch.arange(start, start + frames, device=device)
            rotations.append((start, rope_rotation(rope_angles(self.cfg.head_dim, positions, height, width))))
        by_start = dict(rotations)
        if len(by_start) == 1:
            rotation = next(iter(by_start.values())).unsqueeze(0)  # [1, L, D/2]
        else:
            rows = [
                by_start[s].unsqueeze(0).expand(n, -1, -1)
                for s, n in zip(start_frames, group_sizes, strict=True)
            ]
            rotation = torch.cat(rows)  # [B, L, D/2]
        grid = (height, width)
        if caches is None:
            mask = None
            if chunk_frames is not None:
                mask = block_causal_mask(
                    frames, tokens_per_frame, chunk_frames, window_frames, device, independent_first_frame
                )
            layout = None
            if self.sparse is not None:
                layout = full_sequence_layout(
                    grid, frames, chunk_frames, window_frames, independent_first_frame
                )
            return AttentionContext(rotation=rotation, mask=mask, layout=layout)
        bindings = []
        for cache, start in zip(caches, start_frames, strict=True):
            plan = cache.plan_write(start * tokens_per_frame, num_tokens)
            layout = None if self.sparse is None else cached_layout(cache, plan.attend_start, grid)
            bindings.append(CacheBinding(cache, plan, layout))
        return AttentionContext(rotation=rotation, bindings=bindings)

    def _blocks(self) -> list[DiTBlock]:
        return list(self.blocks)  # type: ignore[arg-type]

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """[B, F, S, p_t*p_h*p_w*C] -> [B, C, F*p_t, h*p_h, w*p_w] (channel fastest in a token)."""
        pt, ph, pw = self.cfg.patch_size
        f, h, w = grid
        c = self.cfg.out_dim
        x = x.reshape(x.shape[0], f, h, w, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(x.shape[0], c, f * pt, h * ph, w * pw)

    def cache_shape(self) -> tuple[int, int]:
        """(heads, head_dim) of the self-attention cache."""
        return self.cfg.num_heads, self.cfg.head_dim

    @property
    def num_parameters(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())
