"""Turning a `Session` into a `Snapshot` and back (see engine.snapshot for the two kinds)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch

from engine.session import Blend, PendingPrompt, Session, SessionParams
from engine.snapshot import SNAPSHOT_VERSION, Snapshot, SnapshotKind

if TYPE_CHECKING:
    from engine.generator import Generator


# A compact snapshot keeps the VAE decoder's feature cache only up to this size (tiny: ~1 MB;
# wan-1.3b at 480x832: ~1.9 GB in bf16, which is re-warmed from the context latents instead).
COMPACT_VAE_BYTES = 32 * 2**20


def _warm_up_decoder(session: Session) -> None:
    """Approximate the decoder's history by decoding the newest contiguous context latents.

    The Wan decoder looks back further than the DiT's window, so the first chunks after such a
    resume can differ slightly from the original stream; frame counts and indices are exact.
    """
    run: list[torch.Tensor] = []
    end = session.latent_frame
    for start, latents in reversed(session.context):
        if start + latents.shape[1] != end:
            break
        run.insert(0, latents)
        end = start
    session.decoder.reset()
    if run:
        session.decoder.decode(torch.cat(run, dim=1).transpose(1, 2))


def _rng_tensor(rng: torch.Generator) -> torch.Tensor:
    return rng.get_state().clone()


def take_snapshot(session: Session, kind: SnapshotKind = "full") -> Snapshot:
    if kind not in ("full", "compact"):
        raise ValueError("snapshot kind must be 'full' or 'compact'")
    session._check_open()
    gen = session.generator
    tensors: dict[str, torch.Tensor] = {"rng": _rng_tensor(session.rng)}
    for i, (_, latents) in enumerate(session.context):
        tensors[f"context.{i}"] = latents
    vae_state = session.decoder.state()
    keep_vae = (
        kind == "full" or sum(v.numel() * v.element_size() for v in vae_state.values()) <= COMPACT_VAE_BYTES
    )
    if keep_vae:
        tensors.update({f"vae.{key}": value for key, value in vae_state.items()})
    if kind == "full":
        for key, value in session.cache.state().items():
            tensors[f"kv.{key}"] = value
    blend: dict[str, Any] | None = None
    if session.blend is not None:
        b = session.blend
        tensors["blend.source"], tensors["blend.target"] = b.source, b.target
        blend = {"target_text": b.target_text, "total": b.total, "done": b.done}
    pending = session.pending
    meta = {
        "version": SNAPSHOT_VERSION,
        "kind": kind,
        "preset": gen.config.name,
        "config": json.loads(json.dumps(gen.config.to_dict())),
        "session_id": session.id,
        "seed": session.seed,
        "params": {"transition": session.params.transition, "blend_chunks": session.params.blend_chunks},
        "prompt": session.prompt,
        "prompt_revision": session.prompt_revision,
        "pending": None if pending is None else pending.__dict__,
        "blend": blend,
        "chunk_index": session.chunk_index,
        "latent_frame": session.latent_frame,
        "frame_index": session.frame_index,
        "vae_state": keep_vae,
        "context_starts": [start for start, _ in session.context],
    }
    return Snapshot(meta, tensors)


def restore_session(gen: Generator, snap: Snapshot) -> Session:
    meta, t = snap.meta, snap.tensors
    if meta["config"] != json.loads(json.dumps(gen.config.to_dict())):
        raise ValueError(f"snapshot was taken on preset {meta['preset']!r} with a different configuration")
    session = Session(gen, meta["prompt"], meta["seed"], SessionParams(**meta["params"]), meta["session_id"])
    session.rng.set_state(t["rng"])
    session.prompt_revision = meta["prompt_revision"]
    session.chunk_index = meta["chunk_index"]
    session.latent_frame = meta["latent_frame"]
    session.frame_index = meta["frame_index"]
    if meta["pending"] is not None:
        session.pending = PendingPrompt(**meta["pending"])
    if meta["blend"] is not None:
        session.blend = Blend(t["blend.source"], t["blend.target"], **meta["blend"])
    session.context = [
        (start, t[f"context.{i}"].to(gen.device, gen.dtype)) for i, start in enumerate(meta["context_starts"])
    ]
    if meta["vae_state"]:
        session.decoder.load_state({k.removeprefix("vae."): v for k, v in t.items() if k.startswith("vae.")})
    else:
        _warm_up_decoder(session)
    if snap.kind == "full":
        session.cache.load_state({k.removeprefix("kv."): v for k, v in t.items() if k.startswith("kv.")})
    else:
        prompt = session._prompt_kv_for_context()
        gen.rebuild_cache(session.cache, prompt, session.context)
        tokens_per_frame = session.cache.tokens_per_frame
        session.cache.seek(session.latent_frame * tokens_per_frame)
    return session
