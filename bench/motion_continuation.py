"""Does a clean-prefix teacher continue a clip the way the prompt says? For held-out prompts
whose object moves in a straight line, renders the prompt's own clip (the world's stream
rules), encodes it and keeps its first `--prefix` latent frames as clean context; the run's
teacher then samples the rest (`euler_sample(prefix=...)`, CFG, same noise) twice: with the
prompt, and with the prompt's motion reversed in its rows (`reverse_motion`). Both are scored
against the *original* direction on the generated frames only: a teacher that follows the
prompt moves forward (+0.12..0.18 frame widths/s) for the first and backward for the second; one
that extrapolates the prefix moves forward for both; one that ignores both, neither.

`--past student` gives the teacher the student's own first chunk(s) for the prompt instead of
the world's clip (`--student`, default the shipped weights): what the DMD real score asks the
student to draw after its own past in a self-forcing window with a clean context. The size
(and count, colour, shape) the evaluator reads in the given past and in each continuation tell
whether that real score keeps an object's size, corrects it or changes it.

    .venv/bin/python -m bench.motion_continuation --run runs/tiny [--prompts 24] [--prefix 3]
    .venv/bin/python -m bench.motion_continuation --run runs/tiny --past student \
        [--guidance 4] [--motion-guidance 0] [--seed 0]

Numbers in docs/BENCHMARKS.md, "Motion diagnosis" and "Eighteenth session".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench.teacher_args import add_teacher_sampling_args
from bench.world_clips import encode_world_clip
from engine.data.eval_prompts import straight_line_prompts
from engine.data.render import RenderConfig
from engine.data.tensors import from_model_output
from engine.eval import evaluate_videos
from engine.eval.fidelity import ATTRIBUTES
from engine.sampler import FlowMatchSchedule
from engine.text.schema import reverse_motion
from engine.train.flow import Guidance, euler_sample
from engine.train.models import load_dit, load_vae, run_text_encoder, stage_file, training_preset
from engine.train.student import rollout

SHIPPED_STUDENT = Path(__file__).resolve().parents[1] / "engine" / "weights" / "tiny" / "dit.safetensors"


@torch.no_grad()
def continuation(
    run: Path,
    prompts: int,
    prefix: int,
    frames: int,
    guidance: float,
    steps: int,
    student_file: Path | None = None,
    motion_guidance: float = 0.0,
    seed: int = 0,
) -> dict:
    """The teacher's continuations of the world's clips, or of the student in `student_file`'s
    own first chunks; `seed` draws the clips and the noise."""
    config = training_preset("tiny")
    teacher = load_dit(config, stage_file(run, "teacher", "teacher.safetensors")).eval()
    student = load_dit(config, student_file).eval() if student_file else None
    chunk = config.sampler.frames_per_chunk
    vae = load_vae(config, stage_file(run, "vae", "vae.safetensors"))
    text = run_text_encoder(config, run)
    chosen = straight_line_prompts(prompts)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    stride = config.vae.temporal_stride
    render = RenderConfig(num_frames=frames * stride, fps=config.fps)
    forward: list[np.ndarray] = []
    backward: list[np.ndarray] = []
    given: list[np.ndarray] = []
    own_frames: list[np.ndarray] = []  # the student's own continuation of that past
    for p in chosen:
        latents = encode_world_clip(vae, p.spec, rng, render, clip=False).transpose(1, 2)  # [1, F, C, h, w]
        rows = text.encode([p.text])
        noise = torch.randn(latents.shape, generator=g)
        if student is not None:  # the student's own stream for this prompt: its past and what follows
            own = rollout(
                student,
                FlowMatchSchedule(config.sampler),
                config,
                student.encode_prompt(rows),
                -(-frames // chunk),
                generator=g,
            )
            latents = own.latents[:, :frames]
            own_frames.append(from_model_output(vae.decode(latents.transpose(1, 2))[0])[prefix * stride :])
        for emb, out in ((rows, forward), (reverse_motion(rows), backward)):
            x0, _ = euler_sample(
                teacher,
                noise,
                Guidance.of(teacher, emb, guidance, motion_guidance),
                steps=steps,
                shift=config.sampler.shift,
                prefix=latents[:, :prefix],
            )
            video = from_model_output(vae.decode(x0.transpose(1, 2))[0])
            out.append(video[prefix * stride :])  # the generated frames only
        given.append(video[: prefix * stride])  # the clean past: both passes decode it alike
    row: dict = {"prompts": len(chosen), "prefix_latent_frames": prefix}
    frames_of = {"given": given, "prompt": forward, "reversed": backward}
    if student is not None:
        frames_of["student"] = own_frames
    for name, videos in frames_of.items():
        res = evaluate_videos([(v, p.text) for v, p in zip(videos, chosen, strict=True)], fps=config.fps)
        along = res["speed_along_prompt"]
        row[name] = {
            "along_mean": along["mean"],
            "along_median": along["median"],
            "objects": along["objects"],
            **{k: res["accuracy"][k] for k in ATTRIBUTES},
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.motion_continuation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--prompts", type=int, default=24, help="held-out straight-line prompts")
    parser.add_argument("--prefix", type=int, default=3, help="clean latent frames given (3 = one chunk)")
    parser.add_argument(
        "--past", choices=("world", "student"), default="world", help="whose frames the prefix is"
    )
    parser.add_argument(
        "--student", type=Path, default=SHIPPED_STUDENT, help="student DiT for --past student"
    )
    parser.add_argument(
        "--motion-guidance",
        type=float,
        default=0.0,
        help="the teacher's motion guidance m (engine.train.flow.Guidance), as the DMD real score's",
    )
    parser.add_argument("--seed", type=int, default=0, help="draws the clips and the noise")
    add_teacher_sampling_args(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    student = args.student if args.past == "student" else None
    row = continuation(
        args.run,
        args.prompts,
        args.prefix,
        args.frames,
        args.guidance,
        args.steps,
        student,
        args.motion_guidance,
        args.seed,
    )
    row.update(past=args.past, guidance=args.guidance, motion_guidance=args.motion_guidance, seed=args.seed)
    print(
        f"{row['prompts']} prompts, {row['prefix_latent_frames']} clean latent frames "
        f"of the {args.past} given"
    )
    print("the given past, the teacher's frames after it with the prompt's rows and reversed ones")
    print("(and the student's own frames after its past);")
    print("speed along the prompt's direction in frame widths/s, the evaluator's accuracies:")
    print(f"{'frames':>9} {'mean':>7} {'median':>7} {'objs':>4} " + " ".join(f"{a:>6}" for a in ATTRIBUTES))
    for name in [k for k in ("given", "prompt", "reversed", "student") if k in row]:
        r = row[name]
        along = f"{r['along_mean']:>+7.3f} {r['along_median']:>+7.3f} {r['objects']:>4}"
        print(f"{name:>9} {along} " + " ".join(f"{r[a]:>6.1%}" for a in ATTRIBUTES))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
