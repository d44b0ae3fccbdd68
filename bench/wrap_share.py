"""How often do the teacher's training clips show a translating object cut by the frame border,
and how often the wrap itself -- out through one border and in through the opposite one inside
the clip? Draws clips as the teacher stage's dataset does (`engine.train.clips.sample_clip`,
its default 6 latent frames = 24 frames) and reads each object's motion law at the clip's frames.

    .venv/bin/python -m bench.wrap_share [--clips 3000] [--frames 24] [--wrap-fraction 0.3]

Numbers in docs/BENCHMARKS.md, "Twentieth session".
"""

from __future__ import annotations

import argparse

import numpy as np

from engine.data.layout import state_at, wrapped
from engine.data.shapes import EXTENTS
from engine.data.vocab import DIRECTIONS
from engine.train.clips import ClipConfig, sample_clip


def wrap_share(clips: int, frames: int, wrap_fraction: float, seed: int) -> dict[str, float]:
    cfg = ClipConfig(frames=frames, p_wrap=wrap_fraction)
    rng = np.random.default_rng(seed)
    cut = with_wrap = 0
    for _ in range(clips):
        clip = sample_clip(rng, cfg)
        times = clip.start + np.arange(cfg.frames) / cfg.fps
        is_cut = is_wrapped = False
        for track in clip.tracks:
            if str(track.obj.motion) not in DIRECTIONS:
                continue
            s = state_at(track, times, cfg.width, cfg.height)
            left, top, right, bottom = EXTENTS[str(track.obj.shape)]
            r = s.radius
            out = (s.cx - left * r < 0) | (s.cx + right * r > cfg.width)
            out |= (s.cy - top * r < 0) | (s.cy + bottom * r > cfg.height)
            is_cut |= bool(out.any())
            is_wrapped |= bool(wrapped(s, cfg.width, cfg.height).any())
        cut += is_cut
        with_wrap += is_wrapped
    return {"clips": clips, "cut_by_border": cut / clips, "wrap_inside": with_wrap / clips}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wrap_share", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=24, help="frames per clip (4 per latent frame)")
    parser.add_argument("--wrap-fraction", type=float, default=0.0, help="the teacher's wrap_fraction")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    row = wrap_share(args.clips, args.frames, args.wrap_fraction, args.seed)
    print(
        f"{row['clips']} clips of {args.frames} frames, wrap_fraction {args.wrap_fraction:g}: "
        f"a translating object cut by the border in {row['cut_by_border']:.1%}, "
        f"its wrap inside the clip in {row['wrap_inside']:.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
