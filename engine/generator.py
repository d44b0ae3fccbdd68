"""`Generator`: the model (DiT + VAE + prompt encoder) and the entry point of the Session API.

    gen = Generator.from_preset("tiny")
    s = gen.open("a red circle moving left", seed=1)
    chunk = s.step()                       # uint8 frames [n, H, W, 3] + metadata
    s.set_prompt("a blue square", transition="blend", over_chunks=3)
    snap = s.snapshot(); s2 = gen.resume(snap)
    gen.step_many([s1, s2, s3])            # one batched forward for several sessions

The generator holds no per-stream state: sessions own their KV cache, random numbers, prompt
state and VAE decoder cache, so any number of them can share it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.config import GeneratorConfig
from engine.kv_cache import KVCache
from engine.loader import load_into, read_checkpoint
from engine.model.dit import CausalDiT, PromptKV
from engine.presets import get_preset
from engine.rollout import generate_chunk, rebuild_cache
from engine.sampler import FlowMatchSchedule
from engine.session import Chunk, ChunkNoise, ChunkPlan, Session, SessionParams
from engine.snapshot import Snapshot
from engine.text import build_text_encoder
from engine.text.base import CachedTextEncoder
from engine.vae.factory import AnyVAE, build_vae, load_vae_weights

log = logging.getLogger(__name__)
WEIGHTS_DIR = Path(__file__).parent / "weights"
PROMPT_KV_CACHE = 64  # cross-attention K/V of recent prompts kept per generator


def frames_to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[1, 3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3]."""
    x = ((pixels[0].float() * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


class Generator:
    def __init__(
        self,
        config: GeneratorConfig,
        dit: CausalDiT,
        vae: AnyVAE,
        text: CachedTextEncoder,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype
        self.dit = dit.to(self.device, dtype).eval().requires_grad_(False)
        self.vae = vae.to(self.device, dtype).eval().requires_grad_(False)
        self.text = text
        self.schedule = FlowMatchSchedule(config.sampler)
        self._prompt_kv: OrderedDict[str, PromptKV] = OrderedDict()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: GeneratorConfig,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        seed: int = 0,
    ) -> Generator:
        """Random weights from `seed` (for tests and benchmarks; speed doesn't depend on values)."""
        torch.manual_seed(seed)
        dtype = dtype or (torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32)
        return cls(
            config,
            CausalDiT(config.dit, config.sparse),
            build_vae(config.vae),
            build_text_encoder(config),
            device=device,
            dtype=dtype,
        )

    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        weights: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Generator:
        """Build a preset; load `weights` (a checkpoint file or directory) or the shipped ones."""
        config = get_preset(name)
        if overrides:
            config = config.replace(**overrides)
        weights = (
            Path(weights) if weights else (WEIGHTS_DIR / name if (WEIGHTS_DIR / name).is_dir() else None)
        )
        gen = cls.from_config(config, device=device, dtype=dtype)
        if weights is not None:
            gen.load_weights(weights)
        else:
            log.warning("preset %s: no weights found, using seeded random weights", name)
        return gen

    @classmethod
    def from_checkpoint(cls, path: str | Path, preset: str = "wan-1.3b", **kwargs: Any) -> Generator:
        return cls.from_preset(preset, weights=path, **kwargs)

    def load_weights(self, path: str | Path) -> None:
        """Load a DiT checkpoint file, or a directory with dit.safetensors (+ vae.safetensors and
        text.safetensors)."""
        path = Path(path)
        dit_file = path / "dit.safetensors" if path.is_dir() else path
        optional = ("gate_compress",)  # sparse-attention gates default to zero (dense behaviour)
        load_into(self.dit, read_checkpoint(dit_file), optional=optional, source=str(dit_file))
        if path.is_dir():
            if (path / "vae.safetensors").exists():
                load_vae_weights(path / "vae.safetensors", self.vae)
            if (path / "text.safetensors").exists():  # a trained prompt encoder (the tiny preset's head)
                self.text.load_weights(path / "text.safetensors")
        self._prompt_kv.clear()

    # -- prompts -----------------------------------------------------------------------------

    def embed_prompt(self, text: str) -> torch.Tensor:
        """Text-encoder output [1, Lt, Dt] (LRU-cached by the encoder)."""
        return self.text.encode([text])

    @torch.no_grad()
    def encode_embedding(self, embedding: torch.Tensor) -> PromptKV:
        return self.dit.encode_prompt(embedding.to(self.device, self.dtype))

    def prompt_kv(self, text: str) -> PromptKV:
        """Cross-attention K/V of a prompt, cached per prompt text."""
        kv = self._prompt_kv.get(text)
        if kv is None:
            kv = self.encode_embedding(self.embed_prompt(text))
            self._prompt_kv[text] = kv
            if len(self._prompt_kv) > PROMPT_KV_CACHE:
                self._prompt_kv.popitem(last=False)
        else:
            self._prompt_kv.move_to_end(text)
        return kv

    def rebuild_cache(
        self, cache: KVCache, prompt: PromptKV, context: Sequence[tuple[int, torch.Tensor]]
    ) -> None:
        rebuild_cache(
            self.dit,
            self.schedule,
            prompt,
            cache,
            [(s, lat.to(self.device, self.dtype)) for s, lat in context],
        )

    # -- sessions ----------------------------------------------------------------------------

    def open(
        self,
        prompt: str,
        seed: int | None = None,
        params: SessionParams | None = None,
        session_id: str | None = None,
    ) -> Session:
        return Session(self, prompt, seed, params, session_id)

    def resume(self, snapshot: Snapshot | bytes) -> Session:
        from engine.session_state import restore_session

        if isinstance(snapshot, bytes | bytearray):
            snapshot = Snapshot.from_bytes(bytes(snapshot))
        return restore_session(self, snapshot)

    def step_many(
        self, sessions: Sequence[Session], noise: Sequence[ChunkNoise] | None = None
    ) -> list[Chunk]:
        """Advance every session by one chunk; sessions with equal chunk length share one forward.

        Each session gets the frames it would get stepping alone (to rounding).
        """
        if any(s.generator is not self for s in sessions):
            raise ValueError("all sessions must belong to this generator")
        if len({s.id for s in sessions}) != len(sessions):
            raise ValueError("a session appears twice")
        plans = [s.begin_chunk(noise[i] if noise else None) for i, s in enumerate(sessions)]
        groups: dict[int, list[int]] = {}
        for i, plan in enumerate(plans):
            groups.setdefault(plan.frames, []).append(i)
        latents: dict[int, torch.Tensor] = {}
        denoise_s: dict[int, float] = {}
        for members in groups.values():
            t0 = time.perf_counter()
            x0 = self._denoise_group([sessions[i] for i in members], [plans[i] for i in members])
            elapsed = _synchronized_elapsed(self.device, t0)
            for row, i in enumerate(members):
                latents[i] = x0[row : row + 1]
                denoise_s[i] = elapsed
        chunks = []
        for i, (session, plan) in enumerate(zip(sessions, plans, strict=True)):
            t0 = time.perf_counter()
            pixels = session.decoder.decode(latents[i].transpose(1, 2))  # [1, 3, T, H, W]
            frames = frames_to_uint8(pixels)
            decode_s = _synchronized_elapsed(self.device, t0)
            chunks.append(session.finish_chunk(plan, latents[i], denoise_s[i], decode_s, frames))
        return chunks

    def _denoise_group(self, sessions: Sequence[Session], plans: Sequence[ChunkPlan]) -> torch.Tensor:
        noise = torch.cat([p.noise for p in plans])

        def renoise(step: int, shape: torch.Size) -> torch.Tensor:
            return torch.cat([p.renoise[step] for p in plans])

        return generate_chunk(
            self.dit,
            self.schedule,
            PromptKV.cat([p.prompt for p in plans]),
            [s.cache for s in sessions],
            [p.start_frame for p in plans],
            noise,
            renoise,
        )

    @property
    def info(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "preset": cfg.name,
            "width": cfg.width,
            "height": cfg.height,
            "fps": cfg.fps,
            "frames_per_chunk": cfg.sampler.frames_per_chunk * cfg.vae.temporal_stride,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "parameters": self.dit.num_parameters,
        }


def _synchronized_elapsed(device: torch.device, t0: float) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0
