"""Does a model bring an object back after it leaves the frame? The world wraps a translating
object: out through one border, in through the opposite one. For held-out straight-line prompts
this renders the prompt's stream from the moment its object is leaving -- the last frame of the
clean past shows only `--visible` of it -- encodes it, and lets the run's teacher (CFG, as the
DMD real score) and a student (through its KV cache, as a self-forcing world-context window)
draw the frames after that past. `--past empty` gives the background alone instead: the
student's own stream once its object has left the cache.

Each continuation's last `--tail` frames are classed by the evaluator's tracks: *entry* -- an
object on the half of the frame the prompt's direction comes from (it wrapped, or was drawn
anew there); *exit* -- objects only on the half it was heading to (parked at or behind the
border it left through); *empty* -- no object. The world's own frames after the past (through
the VAE) are the reference: with `--past leaving` nearly all of them are *entry*.

    .venv/bin/python -m bench.wrap_continuation --run runs/tiny [--past leaving|empty] [--visible 0.05] \
        [--frames 9] [--student engine/weights/tiny/dit.safetensors] [--guidance 4] [--motion-guidance 0]

Numbers in docs/BENCHMARKS.md, "Twentieth session".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench.motion_continuation import SHIPPED_STUDENT
from bench.teacher_args import add_teacher_sampling_args
from engine.data.eval_prompts import straight_line_prompts
from engine.data.render import RenderConfig, make_scene, render_scene
from engine.data.tensors import from_model_output, to_model_input
from engine.data.vocab import DIRECTIONS
from engine.eval.recognise import recognise_clip
from engine.sampler import FlowMatchSchedule
from engine.train.flow import Guidance, euler_sample
from engine.train.models import load_dit, load_vae, run_text_encoder, stage_file, training_preset
from engine.train.student import rollout

CLASSES = ("entry", "exit", "empty")


def leaving_start(frames: np.ndarray, background: np.ndarray, visible: float, past: int) -> int | None:
    """First frame index of a clip whose `past`-th frame is the first, after the object was
    whole, to show no more than `visible` of its largest area; None if the stream has no exit."""
    area = np.any(frames != background, axis=-1).sum(axis=(1, 2))  # [T] object pixels
    peak = int(np.argmax(area))
    out = np.nonzero(area[peak:] <= visible * area[peak])[0]
    if not len(out):
        return None
    start = peak + int(out[0]) - past + 1
    return start if start >= 0 else None


def side_of(frames: np.ndarray, direction: tuple[float, float], tail: int, fps: float) -> str:
    """`entry`, `exit` or `empty` (see the module docstring) for generated frames [T, H, W, 3]."""
    h, w = frames.shape[1:3]
    seen = []
    for obj in recognise_clip(frames, fps):
        tr = obj.track
        if tr is None:
            continue
        last = np.arange(len(tr.cx)) >= len(tr.cx) - tail
        keep = last & tr.present
        if keep.any():  # the object's position along the prompt's direction, frame centre = 0
            along = (tr.cx[keep] - w / 2) * direction[0] + (tr.cy[keep] - h / 2) * direction[1]
            seen.append(float(np.mean(along)))
    if not seen:
        return "empty"
    return "entry" if min(seen) < 0 else "exit"


@torch.no_grad()
def wrap_continuation(
    run: Path,
    prompts: int,
    past: str,
    visible: float,
    frames: int,
    guidance: float,
    motion_guidance: float,
    steps: int,
    student_file: Path | None,
    tail: int,
    seed: int = 0,
) -> dict:
    config = training_preset("tiny")
    teacher = load_dit(config, stage_file(run, "teacher", "teacher.safetensors")).eval()
    student = load_dit(config, student_file).eval() if student_file else None
    vae = load_vae(config, stage_file(run, "vae", "vae.safetensors"))
    text = run_text_encoder(config, run)
    chunk = config.sampler.frames_per_chunk
    stride = config.vae.temporal_stride
    prefix = chunk  # one clean chunk: the student's cache holds it as a self-forcing window does
    render = RenderConfig(num_frames=int(16 * config.fps), fps=config.fps)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    tally: dict[str, dict[str, int]] = {}
    used = 0
    for p in straight_line_prompts(prompts):
        scene = make_scene(p.spec, rng, render, clip=False)
        if past == "leaving":
            stream = render_scene(scene, render)  # 16 s from the stream's start
            start = leaving_start(stream, scene.background, visible, prefix * stride)
            if start is None:
                continue
            clip = render_scene(scene, render, start, frames * stride)
        else:
            clip = np.repeat(scene.background[None], frames * stride, axis=0)
        latents = vae.encode_latent(to_model_input(clip)[None]).transpose(1, 2)  # [1, F, C, h, w]
        rows = text.encode([p.text])
        drawn = {"world": latents}
        x0, _ = euler_sample(
            teacher,
            torch.randn(latents.shape, generator=g),
            Guidance.of(teacher, rows, guidance, motion_guidance),
            steps=steps,
            shift=config.sampler.shift,
            prefix=latents[:, :prefix],
        )
        drawn["teacher"] = x0
        if student is not None:
            own = rollout(
                student,
                FlowMatchSchedule(config.sampler),
                config,
                student.encode_prompt(rows),
                -(-frames // chunk),
                generator=g,
                context=latents[:, :prefix],
            )
            drawn["student"] = own.latents[:, :frames]
        direction = DIRECTIONS[str(p.spec.objects[0].motion)]
        for name, lat in drawn.items():
            video = from_model_output(vae.decode(lat.transpose(1, 2))[0])[prefix * stride :]
            side = side_of(video, direction, tail, config.fps)
            counts = tally.setdefault(name, dict.fromkeys(CLASSES, 0))
            counts[side] += 1
        used += 1
    return {
        "prompts": used,
        "past": past,
        "visible": visible,
        "shares": {name: {c: n / max(used, 1) for c, n in counts.items()} for name, counts in tally.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.wrap_continuation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--prompts", type=int, default=24, help="held-out straight-line prompts")
    parser.add_argument(
        "--past", choices=("leaving", "empty"), default="leaving", help="the clean chunk given"
    )
    parser.add_argument(
        "--visible", type=float, default=0.05, help="share of the object the past's last frame shows"
    )
    parser.add_argument("--tail", type=int, default=4, help="last generated frames that are classed")
    parser.add_argument("--student", type=Path, default=SHIPPED_STUDENT, help="student DiT ('none': skip)")
    parser.add_argument("--motion-guidance", type=float, default=0.0, help="the teacher's motion guidance m")
    parser.add_argument("--seed", type=int, default=0, help="draws the scenes and the noise")
    add_teacher_sampling_args(parser)
    parser.set_defaults(frames=9)  # 6 generated latent frames: 1.5 s, in which the world's object re-enters
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    row = wrap_continuation(
        args.run,
        args.prompts,
        args.past,
        args.visible,
        args.frames,
        args.guidance,
        args.motion_guidance,
        args.steps,
        None if str(args.student) == "none" else args.student,
        args.tail,
        args.seed,
    )
    row.update(guidance=args.guidance, motion_guidance=args.motion_guidance, seed=args.seed)
    print(f"{row['prompts']} prompts, past: {args.past}; where the object is in the last {args.tail} frames")
    print(f"{'frames':>8} " + " ".join(f"{c:>6}" for c in CLASSES))
    for name, shares in row["shares"].items():
        print(f"{name:>8} " + " ".join(f"{shares[c]:>6.0%}" for c in CLASSES))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
