"""Verification of the engine against golden tensors of the public Self Forcing implementation.

A golden file `NAME.safetensors` (+ `NAME.json` beside it; see shared/reference/README.md)
holds seeded random weights, the inputs of a causal inference run (prompt embedding, initial
noise, every re-noise draw) and the reference's outputs. `verify_golden` rebuilds the
configuration, replays the run through the engine's own code (DiT, KV cache, sampler, rollout,
VAE) and reports max|ours - ref| / max|ref| for every output tensor it can reproduce.

Sections handled (each optional except the main run): cached generation in global or rolling
mode (flows, x0s, blocks, video, layer KV snapshots), a block-causal full-sequence forward, a
prompt-switch continuation, and a VAE decode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.config import CacheConfig, DiTConfig, SamplerConfig
from engine.kv_cache import KVCache
from engine.loader import load_into, strip_prefixes
from engine.model.dit import CausalDiT, PromptKV
from engine.rollout import generate_chunk
from engine.sampler import FlowMatchSchedule

TOLERANCE = 1e-4
# The reference's hard-coded attention windows (CausalWanSelfAttention.max_attention_size).
REF_GLOBAL_ATTENTION_TOKENS = 32760
REF_TOKENS_PER_FRAME = 1560


@dataclass
class GoldenRun:
    """A golden file: its tensors and its JSON description."""

    path: Path
    tensors: dict[str, torch.Tensor]
    spec: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> GoldenRun:
        from safetensors import safe_open

        path = Path(path)
        with safe_open(str(path), "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
            metadata = f.metadata() or {}
        json_path = path.with_suffix(".json")
        if json_path.exists():
            spec = json.loads(json_path.read_text())
        elif "golden" in metadata:
            spec = json.loads(metadata["golden"])
        else:
            raise FileNotFoundError(f"no {json_path.name} beside {path.name} and no config in its metadata")
        return cls(path, tensors, spec)

    def has(self, name: str) -> bool:
        return name in self.tensors

    def indexed(self, pattern: str) -> list[tuple[int, ...]]:
        """Sorted integer captures of tensor names fully matching `pattern`."""
        rx = re.compile(pattern)
        found = (rx.fullmatch(k) for k in self.tensors)
        return sorted(tuple(int(g) for g in m.groups()) for m in found if m)


@dataclass
class GoldenConfig:
    dit: DiTConfig
    cache: CacheConfig
    sampler: SamplerConfig
    frames: int


def golden_config(run: GoldenRun) -> GoldenConfig:
    """Translate the JSON's reference kwargs into engine configs."""
    spec = run.spec
    cfg = spec.get("config", spec)
    model = next((v for k, v in cfg.items() if k.startswith("model")), cfg)
    pipeline: dict[str, Any] = next((v for k, v in cfg.items() if k.startswith("pipeline")), {})
    dit = DiTConfig(
        patch_size=_patch_size(model.get("patch_size", (1, 2, 2))),
        text_len=model["text_len"],
        in_dim=model.get("in_dim", 16),
        dim=model["dim"],
        ffn_dim=model["ffn_dim"],
        freq_dim=model.get("freq_dim", 256),
        text_dim=model["text_dim"],
        out_dim=model.get("out_dim", 16),
        num_heads=model["num_heads"],
        num_layers=model["num_layers"],
        qk_norm=model.get("qk_norm", True),
        cross_attn_norm=model.get("cross_attn_norm", True),
        eps=model.get("eps", 1e-6),
    )
    noise = run.tensors["inputs/noise"]
    frames = noise.shape[1]
    tokens_per_frame = (noise.shape[3] // dit.patch_size[1]) * (noise.shape[4] // dit.patch_size[2])
    local = model.get("local_attn_size", -1)
    if local == -1:
        extension = run.tensors["inputs/noise_ext"].shape[1] if run.has("inputs/noise_ext") else 0
        cache_frames = cfg.get("kv_cache_size_frames") or frames + extension
        cache = CacheConfig(
            mode="global",
            max_frames=cache_frames,
            sink_frames=0,
            max_attention_tokens=REF_GLOBAL_ATTENTION_TOKENS,
        )
    else:
        cache = CacheConfig(
            mode="rolling",
            max_frames=local,
            sink_frames=model.get("sink_size", 0),
            max_attention_tokens=local * REF_TOKENS_PER_FRAME,
        )
    if (
        cache.max_attention_tokens is not None
        and cache.max_attention_tokens >= cache.max_frames * tokens_per_frame
    ):
        cache = CacheConfig(cache.mode, cache.max_frames, cache.sink_frames, None)
    sampler = SamplerConfig(
        denoising_steps=tuple(pipeline.get("denoising_step_list", (1000, 750, 500, 250))),
        warp_denoising_steps=pipeline.get("warp_denoising_step", True),
        shift=float(_timestep_shift(spec, pipeline)),
        context_noise=float(pipeline.get("context_noise", 0)),
        frames_per_chunk=cfg.get("num_frame_per_block", model.get("num_frame_per_block", 3)),
        independent_first_frame=cfg.get("independent_first_frame", False),
    )
    return GoldenConfig(dit, cache, sampler, frames)


def _patch_size(value: Any) -> tuple[int, int, int]:
    t, h, w = (int(v) for v in value)
    return t, h, w


def _timestep_shift(spec: dict[str, Any], pipeline: dict[str, Any]) -> float:
    """The run's flow-matching shift; the reference wrapper's default (8.0) when unstated."""
    for value in (
        pipeline.get("model_kwargs.timestep_shift"),
        pipeline.get("timestep_shift"),
        spec.get("timesteps", {}).get("timestep_shift"),
    ):
        if value is not None:
            return float(value)
    return 8.0


@dataclass
class Report:
    errors: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, ours: torch.Tensor, ref: torch.Tensor) -> None:
        if ours.shape != ref.shape:
            self.errors[name] = float("inf")
            self.notes.append(f"{name}: shape {list(ours.shape)} vs reference {list(ref.shape)}")
            return
        scale = ref.double().abs().max().clamp_min(1e-30)
        self.errors[name] = float((ours.double() - ref.double()).abs().max() / scale)

    @property
    def ok(self) -> bool:
        return bool(self.errors) and all(e <= TOLERANCE for e in self.errors.values())


def build_dit(run: GoldenRun, cfg: DiTConfig) -> CausalDiT:
    dit = CausalDiT(cfg).eval()
    state = {
        strip_prefixes(k[len("state_dict/") :]): v
        for k, v in run.tensors.items()
        if k.startswith("state_dict/")
    }
    load_into(dit, state, source=run.path.name)
    return dit


def chunk_sizes(frames: int, sampler: SamplerConfig, start_frame: int = 0) -> list[int]:
    """Latent frames of each generated chunk ([1, n, n, ...] with an independent first frame;
    the single-frame chunk exists only at the start of a video, not in a continuation)."""
    n = sampler.frames_per_chunk
    if sampler.independent_first_frame and start_frame == 0:
        return [1] + [n] * ((frames - 1) // n)
    return [n] * (frames // n)


def verify_golden(path: str | Path, *, vae: bool = True) -> Report:
    run = GoldenRun.load(path)
    report = Report()
    if run.has("inputs/noise"):
        _verify_generation(run, report)
    if vae and run.has("vae/latent"):
        from engine.vae.golden import check_vae_section

        report.errors.update(check_vae_section(run.tensors, run.spec.get("vae", {})))
    return report


def _verify_generation(run: GoldenRun, report: Report) -> None:
    gcfg = golden_config(run)
    torch.manual_seed(0)
    dit = build_dit(run, gcfg.dit)
    schedule = FlowMatchSchedule(gcfg.sampler)
    for name, ours in (
        ("outputs/warped_timesteps", schedule.step_timesteps),
        ("outputs/warped_sigmas", schedule.step_sigmas),
    ):
        if run.has(name):
            report.add(name, ours, run.tensors[name])

    noise = run.tensors["inputs/noise"]
    heads, head_dim = dit.cache_shape()
    tokens_per_frame = (noise.shape[3] // gcfg.dit.patch_size[1]) * (noise.shape[4] // gcfg.dit.patch_size[2])
    cache = KVCache(
        gcfg.cache,
        num_layers=gcfg.dit.num_layers,
        tokens_per_frame=tokens_per_frame,
        heads=heads,
        head_dim=head_dim,
        batch=noise.shape[0],
    )
    with torch.no_grad():
        prompt = dit.encode_prompt(run.tensors["inputs/prompt_embeds"])
    start = _generate(run, report, dit, schedule, prompt, cache, noise, "", 0)
    if run.has("inputs/prompt_embeds_2") and run.has("inputs/noise_ext"):
        with torch.no_grad():
            prompt2 = dit.encode_prompt(run.tensors["inputs/prompt_embeds_2"])
        report.notes.append(
            f"prompt switch: {run.spec.get('prompt_switch', 'cross-attention cache recomputed')}"
        )
        _generate(run, report, dit, schedule, prompt2, cache, run.tensors["inputs/noise_ext"], "ext_", start)
    if run.has("inputs/fullseq/x"):
        _full_sequence(run, report, dit, schedule, prompt, gcfg)


def _generate(
    run: GoldenRun,
    report: Report,
    dit: CausalDiT,
    schedule: FlowMatchSchedule,
    prompt: PromptKV,
    cache: KVCache,
    noise: torch.Tensor,
    tag: str,  # "" for the main run, "ext_" for the prompt-switch continuation
    start_frame: int,
) -> int:
    """Replay chunk-by-chunk generation with the file's noise; returns the next frame index."""
    t = run.tensors
    x0_name = "outputs/ext_x0" if tag else "outputs/x0"
    block_name = "outputs/ext_block" if tag else "outputs/block"
    kv_after = "outputs/kv_after_ext_block" if tag else "outputs/kv_after_block"
    renoise_name = "inputs/renoise_ext" if tag else "inputs/renoise"
    blocks: list[torch.Tensor] = []
    local = 0
    for b, size in enumerate(chunk_sizes(noise.shape[1], schedule.cfg, start_frame)):

        def renoise(step: int, shape: torch.Size, b: int = b) -> torch.Tensor:
            return t[f"{renoise_name}/{b}_{step}"]

        def on_step(step: int, flow: torch.Tensor, x0: torch.Tensor, b: int = b) -> None:
            for name, ours in ((f"outputs/{tag}flow/{b}_{step}", flow), (f"{x0_name}/{b}_{step}", x0)):
                if run.has(name):
                    report.add(name, ours, t[name])

        x0 = generate_chunk(
            dit, schedule, prompt, [cache], [start_frame], noise[:, local : local + size], renoise, on_step
        )
        blocks.append(x0)
        _compare_kv(run, report, cache, f"{kv_after}/{b}", b == 0 and not tag)
        if run.has(f"{block_name}/{b}"):
            report.add(f"{block_name}/{b}", x0, t[f"{block_name}/{b}"])
        local += size
        start_frame += size
    video_name = "outputs/ext_video" if tag else "outputs/video"
    if run.has(video_name):
        report.add(video_name, torch.cat(blocks, dim=1), t[video_name])
    return start_frame


def _compare_kv(run: GoldenRun, report: Report, cache: KVCache, prefix: str, first_block: bool) -> None:
    prefixes = [prefix] + (["outputs/kv"] if first_block else [])
    for p in prefixes:
        for (layer,) in run.indexed(re.escape(p) + r"/layer(\d+)_k"):
            for kind, buf in (("k", cache.k), ("v", cache.v)):
                name = f"{p}/layer{layer}_{kind}"
                if run.has(name):
                    report.add(name, buf[layer][:, : cache.local_end], run.tensors[name])


def _full_sequence(
    run: GoldenRun,
    report: Report,
    dit: CausalDiT,
    schedule: FlowMatchSchedule,
    prompt: PromptKV,
    gcfg: GoldenConfig,
) -> None:
    x = run.tensors["inputs/fullseq/x"]
    t = run.tensors["inputs/fullseq/timestep"]
    window = gcfg.cache.max_frames if gcfg.cache.mode == "rolling" else None
    with torch.no_grad():
        flow = dit(
            x,
            t,
            prompt,
            chunk_frames=gcfg.sampler.frames_per_chunk,
            window_frames=window,
            independent_first_frame=gcfg.sampler.independent_first_frame,
        )
        x0 = schedule.to_x0(flow, x, t)
    for name, ours in (("outputs/fullseq/flow", flow), ("outputs/fullseq/x0", x0)):
        if run.has(name):
            report.add(name, ours, run.tensors[name])


def format_report(report: Report, path: str | Path, out: Callable[[str], None] = print) -> None:
    out(f"{Path(path).name}: {len(report.errors)} tensors compared (tolerance {TOLERANCE:g})")
    width = max((len(k) for k in report.errors), default=10)
    for name, err in report.errors.items():
        out(f"  {name:<{width}}  {err:.3e}  {'ok' if err <= TOLERANCE else 'FAIL'}")
    for note in report.notes:
        out(f"  note: {note}")
    out("PASS" if report.ok else "FAIL")
