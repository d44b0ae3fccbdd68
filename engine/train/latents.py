"""A latent dataset: training clips encoded once by the trained VAE, with their captions'
text-encoder rows, cached on disk so a stage (and its resumes) pays the encoding only once.

Stored as `latents.safetensors` (fp16: latents [N, F, C, h, w] in diffusion space, i.e.
normalised, frame-major as the DiT takes them; text [N, Lt, Dt]; wraps [N], each clip's first
video frame after a translating object wrapped, -1 if none) plus `captions.json`. Clips
are drawn from `engine.train.clips` with their own seed, so the dataset is reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.data.tensors import to_model_input
from engine.text.base import CachedTextEncoder
from engine.train.clips import ClipConfig, SceneSampler, first_wrap, sample_clip
from engine.vae.tiny import TinyVAE


@dataclass
class LatentDataset:
    latents: torch.Tensor  # [N, F, C, h, w] fp16
    text: torch.Tensor  # [N, Lt, Dt] fp16
    captions: list[str]
    wraps: torch.Tensor | None = None  # [N] int32 first video frame after a wrap, -1: none

    def __len__(self) -> int:
        return self.latents.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """(latents [B, F, C, h, w] fp32, text [B, Lt, Dt] fp32, captions)."""
        return (
            self.latents[index].float(),
            self.text[index].float(),
            [self.captions[i] for i in index.tolist()],
        )

    def wrapping_in(self, first: int, stop: int) -> torch.Tensor:
        """[M] indices of the clips whose first wrap falls in video frames [first, stop)."""
        if self.wraps is None:
            raise ValueError("this latent dataset records no wraps: delete it and encode it again")
        return torch.nonzero((self.wraps >= first) & (self.wraps < stop)).flatten()

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        tensors = {"latents": self.latents.contiguous(), "text": self.text.contiguous()}
        if self.wraps is not None:
            tensors["wraps"] = self.wraps.contiguous()
        save_file(tensors, str(directory / "latents.safetensors"))
        (directory / "captions.json").write_text(json.dumps(self.captions))

    @staticmethod
    def load(directory: Path) -> LatentDataset | None:
        from safetensors.torch import load_file

        path = directory / "latents.safetensors"
        if not path.exists() or not (directory / "captions.json").exists():
            return None
        t = load_file(str(path))
        captions = json.loads((directory / "captions.json").read_text())
        return LatentDataset(t["latents"], t["text"], captions, t.get("wraps"))


@torch.no_grad()
def encode_clips(
    vae: TinyVAE,
    text: CachedTextEncoder,
    clips: ClipConfig,
    n: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    batch: int = 16,
    scene: SceneSampler | None = None,
) -> LatentDataset:
    """Render and encode `n` training clips (deterministic in `seed`; `scene`: see `sample_clip`).
    The VAE runs in fp32 (bf16 encoding was 75x slower on a CPU without native bf16:
    `python -m bench.precision`)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A7E]))
    lat, txt, caps, wraps = [], [], [], []
    done = 0
    while done < n:
        k = min(batch, n - done)
        group = [sample_clip(rng, clips, scene) for _ in range(k)]
        video = to_model_input(np.stack([c.frames for c in group]))  # [k, 3, T, H, W]
        z = vae.encode_latent(video)  # [k, C, F, h, w]
        lat.append(z.transpose(1, 2).to(torch.float16))
        captions = [c.caption for c in group]
        txt.append(text.encode(captions).to(torch.float16))
        caps += captions
        wraps += [first_wrap(c, clips) for c in group]
        done += k
        if progress is not None:
            progress(k)
    return LatentDataset(torch.cat(lat), torch.cat(txt), caps, torch.tensor(wraps, dtype=torch.int32))


def load_or_encode(
    directory: Path,
    vae: TinyVAE,
    text: CachedTextEncoder,
    clips: ClipConfig,
    n: int,
    seed: int,
    note: Callable[[str], None] = print,
    quiet: bool = False,
) -> LatentDataset:
    """The cached dataset under `directory` if it has `n` clips of the right length drawn with
    `clips` (recorded in `clips.json`; a dataset without one was drawn before wraps could be
    asked for: it serves a config that asks for none; one drawn with wraps must record where they
    fall), else encode it."""
    cached = LatentDataset.load(directory)
    frames = clips.frames // vae.config.frames_per_latent
    record = directory / "clips.json"
    drawn = json.loads(record.read_text()) if record.exists() else None
    same = drawn == asdict(clips) if drawn is not None else clips.p_wrap == 0
    recorded = clips.p_wrap == 0 or (cached is not None and cached.wraps is not None)  # where clips wrap
    if cached is not None and same and recorded and len(cached) == n and cached.latents.shape[1] == frames:
        note(f"latent dataset: {n} clips from {directory}")
        return cached
    from tqdm import tqdm

    with tqdm(total=n, desc="encode clips", dynamic_ncols=True, disable=quiet) as bar:
        data = encode_clips(vae, text, clips, n, seed, progress=bar.update)
    data.save(directory)
    record.write_text(json.dumps(asdict(clips)))
    return data
