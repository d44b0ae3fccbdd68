"""One video stream: its KV cache, prompt state, random numbers, counters and VAE decoder.

A session is advanced one chunk at a time by its `Generator` (`Session.step()` is
`generator.step_many([session])`), so a session stepped alone and one stepped in a batch run
the same code. Per chunk the session:
  1. applies a pending prompt change (cut / recache / blend),
  2. draws its chunk's noise from its own `torch.Generator` (initial noise, then one re-noise
     draw per denoising step but the last — a fixed order, so results depend only on the seed),
  3. (batched with other sessions) denoises and refreshes the KV cache,
  4. keeps the chunk's clean latents while its frames are in the cache, decodes the chunk with
     its streaming VAE decoder and returns uint8 frames.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from engine.kv_cache import KVCache
from engine.model.dit import PromptKV
from engine.vae.streaming import StreamingDecoder

if TYPE_CHECKING:
    from engine.generator import Generator

Transition = Literal["cut", "recache", "blend"]
TRANSITIONS: tuple[str, ...] = ("cut", "recache", "blend")


class StreamEnded(RuntimeError):
    """The session cannot produce more chunks (global cache full, or closed)."""


@dataclass(frozen=True)
class SessionParams:
    """Per-session options (defaults for prompt changes)."""

    transition: Transition = "cut"
    blend_chunks: int = 2


@dataclass(frozen=True)
class ChunkNoise:
    """Injected noise for one chunk (verification): initial [B, F, C, H, W] + one per re-noise."""

    initial: torch.Tensor
    renoise: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class ChunkTimings:
    denoise_s: float
    decode_s: float

    @property
    def total_s(self) -> float:
        return self.denoise_s + self.decode_s


@dataclass(frozen=True)
class Chunk:
    """A generated chunk: uint8 RGB frames [n, H, W, 3] and its place in the stream."""

    index: int
    first_frame: int
    frames: np.ndarray
    latent_start: int
    latent_frames: int
    timings: ChunkTimings
    steps: int
    prompt: str
    prompt_revision: int

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class PendingPrompt:
    text: str
    transition: Transition
    over_chunks: int
    revision: int


@dataclass
class Blend:
    """Prompt-embedding interpolation in progress: chunk k of `total` uses lerp(k / total)."""

    source: torch.Tensor  # [1, Lt, Dt] text embedding
    target: torch.Tensor
    target_text: str
    total: int
    done: int = 0


@dataclass
class ChunkPlan:
    """What a session contributes to one batched chunk."""

    start_frame: int
    frames: int
    prompt: PromptKV
    noise: torch.Tensor  # [1, F, C, h, w]
    renoise: list[torch.Tensor] = field(default_factory=list)


class Session:
    def __init__(
        self,
        generator: Generator,
        prompt: str,
        seed: int | None = None,
        params: SessionParams | None = None,
        session_id: str | None = None,
    ) -> None:
        self.generator = generator
        self.id = session_id or uuid.uuid4().hex
        self.params = params or SessionParams()
        self.seed = int(seed if seed is not None else torch.randint(0, 2**31 - 1, ()).item())
        self.rng = torch.Generator().manual_seed(self.seed)
        cfg = generator.config
        heads, head_dim = generator.dit.cache_shape()
        self.cache = KVCache(
            cfg.cache,
            num_layers=cfg.dit.num_layers,
            tokens_per_frame=cfg.tokens_per_frame,
            heads=heads,
            head_dim=head_dim,
            dtype=generator.dtype,
            device=generator.device,
            grid=cfg.grid,
        )
        # one decoder pass per chunk (not per latent frame): 3x fewer kernel launches, equal to
        # the frame-by-frame reference decode to ~1e-6 (tests/engine/test_vae_streaming.py)
        self.decoder = StreamingDecoder(generator.vae, frames_per_pass=None)
        self.prompt = prompt
        self.prompt_revision = 0
        self.prompt_embedding = generator.embed_prompt(prompt)  # [1, Lt, Dt]
        self.prompt_kv = generator.prompt_kv(prompt)
        self.pending: PendingPrompt | None = None
        self.blend: Blend | None = None
        self.context: list[tuple[int, torch.Tensor]] = []  # (start frame, clean latents [1, f, C, h, w])
        self.chunk_index = 0
        self.latent_frame = 0  # next latent frame to generate
        self.frame_index = 0  # index of the next video frame
        self.closed = False

    # -- public API --------------------------------------------------------------------------

    def step(self, noise: ChunkNoise | None = None) -> Chunk:
        """Generate the next chunk (see module docstring)."""
        return self.generator.step_many([self], noise=None if noise is None else [noise])[0]

    def set_prompt(
        self, text: str, transition: Transition | None = None, over_chunks: int | None = None
    ) -> int:
        """Change the prompt from the next chunk on; returns the new prompt revision.

        cut: swap the cross-attention K/V only. recache: also rebuild the self-attention cache
        from the cached clean latents under the new prompt. blend: interpolate prompt
        embeddings over `over_chunks` chunks. The last call before a chunk wins.
        """
        transition = transition or self.params.transition
        if transition not in TRANSITIONS:
            raise ValueError(f"unknown transition {transition!r}; use one of {', '.join(TRANSITIONS)}")
        over = self.params.blend_chunks if over_chunks is None else over_chunks
        if over < 1:
            raise ValueError("over_chunks must be >= 1")
        self._check_open()
        revision = (self.pending.revision if self.pending else self.prompt_revision) + 1
        self.pending = PendingPrompt(text, transition, over, revision)
        return revision

    def set_seed(self, seed: int) -> None:
        """Draw the noise of all following chunks from a generator seeded with `seed`."""
        self.seed = int(seed)
        self.rng = torch.Generator().manual_seed(self.seed)

    def snapshot(self, kind: Literal["full", "compact"] = "full"):  # -> Snapshot
        from engine.session_state import take_snapshot

        return take_snapshot(self, kind)

    def close(self) -> None:
        """Release the cache and decoder memory; the session can no longer step."""
        self.closed = True
        self.cache.k.clear()
        self.cache.v.clear()
        self.context.clear()
        self.decoder.reset()

    @property
    def ended(self) -> bool:
        """True when no further chunk fits (global cache full) or the session is closed."""
        return self.closed or not self._fits(self.next_chunk_frames)

    @property
    def next_chunk_frames(self) -> int:
        s = self.generator.config.sampler
        return 1 if s.independent_first_frame and self.latent_frame == 0 else s.frames_per_chunk

    # -- chunk protocol used by Generator.step_many ------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise StreamEnded(f"session {self.id} is closed")

    def _fits(self, frames: int) -> bool:
        cache = self.generator.config.cache
        return cache.mode == "rolling" or self.latent_frame + frames <= cache.max_frames

    def begin_chunk(self, noise: ChunkNoise | None) -> ChunkPlan:
        self._check_open()
        frames = self.next_chunk_frames
        if not self._fits(frames):
            raise StreamEnded(
                f"session {self.id} reached the {self.generator.config.cache.max_frames}-frame cache"
            )
        self._apply_pending_prompt()
        prompt = self._prompt_for_chunk()
        gen = self.generator
        shape = (1, frames, gen.config.dit.in_dim, gen.config.latent_height, gen.config.latent_width)
        if noise is None:
            initial = torch.randn(shape, generator=self.rng)
            renoise = [torch.randn(shape, generator=self.rng) for _ in range(gen.schedule.num_steps - 1)]
        else:
            initial, renoise = noise.initial, list(noise.renoise)
        dev, dt = gen.device, gen.dtype
        return ChunkPlan(
            self.latent_frame, frames, prompt, initial.to(dev, dt), [e.to(dev, dt) for e in renoise]
        )

    def finish_chunk(
        self,
        plan: ChunkPlan,
        latents: torch.Tensor,
        denoise_s: float,
        decode_s: float,
        frames: np.ndarray,
    ) -> Chunk:
        """Record a generated chunk (latents [1, F, C, h, w]) and build its `Chunk`."""
        self._remember_context(plan.start_frame, latents)
        chunk = Chunk(
            index=self.chunk_index,
            first_frame=self.frame_index,
            frames=frames,
            latent_start=plan.start_frame,
            latent_frames=plan.frames,
            timings=ChunkTimings(denoise_s, decode_s),
            steps=self.generator.schedule.num_steps,
            prompt=self.prompt,
            prompt_revision=self.prompt_revision,
        )
        self.chunk_index += 1
        self.latent_frame += plan.frames
        self.frame_index += chunk.num_frames
        return chunk

    def _apply_pending_prompt(self) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        gen = self.generator
        target = gen.embed_prompt(pending.text)
        if pending.transition == "blend":
            source = self._current_embedding()
            self.blend = Blend(source, target, pending.text, pending.over_chunks)
        else:
            self.blend = None
            self.prompt_kv = gen.prompt_kv(pending.text)
            if pending.transition == "recache":
                gen.rebuild_cache(self.cache, self.prompt_kv, self.context)
        self.prompt = pending.text
        self.prompt_embedding = target
        self.prompt_revision = pending.revision

    def _current_embedding(self) -> torch.Tensor:
        """The embedding the last chunk was conditioned on (mid-blend: the blended one)."""
        b = self.blend
        if b is None:
            return self.prompt_embedding
        return torch.lerp(b.source, b.target, b.done / b.total)

    def _prompt_kv_for_context(self) -> PromptKV:
        """Cross-attention K/V the last chunk was generated with (used to rebuild the cache)."""
        if self.blend is None:
            return self.prompt_kv
        return self.generator.encode_embedding(self._current_embedding())

    def _prompt_for_chunk(self) -> PromptKV:
        b = self.blend
        if b is None:
            return self.prompt_kv
        b.done += 1
        if b.done >= b.total:
            self.blend = None
            self.prompt_kv = self.generator.prompt_kv(b.target_text)
            return self.prompt_kv
        return self.generator.encode_embedding(torch.lerp(b.source, b.target, b.done / b.total))

    def _remember_context(self, start: int, latents: torch.Tensor) -> None:
        """Keep clean latents of exactly the frames now in the KV cache (sink + recent window)."""
        self.context.append((start, latents.detach()))
        cache = self.generator.config.cache
        end = start + latents.shape[1]
        if cache.mode == "global":
            return
        keep_from = end - (cache.max_frames - cache.sink_frames)
        kept: list[tuple[int, torch.Tensor]] = []
        for s, lat in self.context:
            frames = torch.arange(s, s + lat.shape[1])
            mask = (frames < cache.sink_frames) | (frames >= keep_from)
            if bool(mask.all()):
                kept.append((s, lat))
            elif bool(mask.any()):
                idx = mask.nonzero().flatten()
                # retained frames of a chunk are contiguous: the sink prefix or the window suffix
                kept.append((s + int(idx[0]), lat[:, idx[0] : idx[-1] + 1]))
        self.context = kept
