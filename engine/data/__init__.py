"""Procedural video world: scenes, rasteriser, captions, endless streams and datasets.

Frames are uint8 RGB numpy arrays [T, H, W, 3] everywhere; ``to_model_input`` turns them into
float [3, T, H, W] in [-1, 1] for models. The torch-dependent parts (dataset, tensors) are
imported lazily so the numpy-only world stays cheap to import.
"""

from __future__ import annotations

from typing import Any

from .captions import canonical_caption, make_caption, make_caption_with_template
from .eval_prompts import EvalPrompt, heldout_eval_prompts
from .layout import Track, sample_tracks, state_at
from .parse import CaptionParseError, parse_caption
from .render import RenderConfig, Scene, make_scene, render_background, render_frames, render_scene
from .splits import SPLITS, heldout_triples, is_heldout_triple, train_triples
from .stream import StreamRenderer
from .world import BackgroundSpec, ObjectSpec, SceneSpec, complete_spec

_LAZY = {
    "Clip": "dataset",
    "SyntheticVideoDataset": "dataset",
    "collate_clips": "dataset",
    "make_clip": "dataset",
    "to_model_input": "tensors",
    "from_model_output": "tensors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


__all__ = [
    "SPLITS",
    "BackgroundSpec",
    "CaptionParseError",
    "Clip",
    "EvalPrompt",
    "ObjectSpec",
    "RenderConfig",
    "Scene",
    "SceneSpec",
    "StreamRenderer",
    "SyntheticVideoDataset",
    "Track",
    "canonical_caption",
    "collate_clips",
    "complete_spec",
    "from_model_output",
    "heldout_eval_prompts",
    "heldout_triples",
    "is_heldout_triple",
    "make_caption",
    "make_caption_with_template",
    "make_clip",
    "make_scene",
    "parse_caption",
    "render_background",
    "render_frames",
    "render_scene",
    "sample_tracks",
    "state_at",
    "to_model_input",
    "train_triples",
]
