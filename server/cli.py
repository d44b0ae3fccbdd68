"""The `rollcast` command: one entry point, subcommands imported only when used.

Each subcommand module defines HELP, add_arguments(parser) and run(args) -> exit code, so
`rollcast --help` stays instant (no torch import) and `rollcast CMD --help` shows CMD's options.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("server.commands.serve", "run API + worker in one process (embedded default, no Redis)"),
    "api": ("server.commands.api", "run the HTTP/WebSocket front end"),
    "worker": ("server.commands.worker", "run a generation worker that pulls sessions from Redis"),
    "generate": ("engine.cli.generate", "generate a video offline to an H.264 mp4"),
    "verify-reference": ("engine.cli.verify_reference", "check the engine against golden reference tensors"),
    "train": ("engine.train.cli", "train a stage of the tiny model (vae, teacher, ode, self-forcing)"),
    "eval": ("engine.eval.cli", "score prompt fidelity and long-stream drift of generated video"),
    "watch": ("rollcast_client.cli.watch", "record a live stream from a server to an mp4"),
    "prompt": ("rollcast_client.cli.prompt", "change the prompt of a running session"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: rollcast COMMAND [options]",
        "",
        "Rollcast: real-time streaming video generation.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'rollcast COMMAND --help' for a command's options."]
    return "\n".join(lines)


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name][0])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rollcast: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = _load(name)
    parser = argparse.ArgumentParser(prog=f"rollcast {name}", description=module.HELP)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
