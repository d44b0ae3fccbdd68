"""`rollcast watch "PROMPT" -o out.mp4`: start a session and record its live stream.

The received fMP4 fragments are appended to ``out.mp4.part`` as they arrive and remuxed
(no re-encoding) into a regular ``out.mp4`` at the end (see `Mp4Recorder`).  The session id
is printed first so that another terminal can steer the stream:

    rollcast watch "a lighthouse at dusk" -o dusk.mp4 --seconds 20
    rollcast prompt s_0123456789abcdef "a lighthouse in a storm" --transition recache

Without --seconds/--frames the stream runs until Ctrl-C, which stops the session (unless it
was attached with --session) and still writes the file.  A second Ctrl-C skips the wait
for the session's end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
from typing import Any

from rollcast_client.cli.common import add_server_arguments, api_key, report_error
from rollcast_client.client import RollcastClient
from rollcast_client.errors import InvalidRequest, RollcastError
from rollcast_client.events import ChunkEvent, Ended, ErrorEvent, PromptApplied, Queued, Reconnected, Started
from rollcast_client.framing import MediaChunk
from rollcast_client.recorder import Mp4Recorder, RecordingSummary
from rollcast_client.session import Session

HELP = "record a live stream from a server to an mp4"

STOP_WAIT_S = 30.0  # after Ctrl-C: how long to wait for the server's `ended`
OK_REASONS = ("completed", "stopped", "deleted")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", metavar="PROMPT", help="text prompt of the new session")
    parser.add_argument("-o", "--output", required=True, help="the mp4 file to write")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, help="generate this many seconds of video")
    length.add_argument("--frames", type=int, help="generate this many frames")
    parser.add_argument("--seed", type=int, help="noise seed (default: random)")
    parser.add_argument("--fps", type=int, help="playback rate (default: the model's)")
    parser.add_argument("--model", help="model id from /v1/models (default: the server's)")
    parser.add_argument(
        "--transition",
        choices=("cut", "recache", "blend"),
        default="cut",
        help="the session's default transition for prompt changes (default cut)",
    )
    parser.add_argument("--session", help="record an existing session instead of creating one")
    parser.add_argument(
        "--fragmented", action="store_true", help="keep the fragmented MP4 as received (no remux)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_server_arguments(parser)


async def _frames_wanted(client: RollcastClient, args: argparse.Namespace) -> int | None:
    if args.frames is not None:
        if args.frames < 1:
            raise InvalidRequest("--frames must be at least 1")
        return int(args.frames)
    if args.seconds is None:
        return None
    if args.seconds <= 0:
        raise InvalidRequest("--seconds must be positive")
    fps = args.fps
    if fps is None:
        models = await client.list_models()
        chosen = next((m for m in models if m.id == args.model), None) if args.model else None
        chosen = chosen or next((m for m in models if m.default), models[0] if models else None)
        if chosen is None:
            raise InvalidRequest("the server lists no models; pass --fps or --frames")
        fps = chosen.fps
    return max(1, math.ceil(args.seconds * fps))


class _Progress:
    """A tqdm bar (or nothing with --quiet) fed by stream items."""

    def __init__(self, total: int | None, quiet: bool) -> None:
        self.bar: Any = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", desc="waiting", file=sys.stderr, dynamic_ncols=True)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def item(self, item: object) -> None:
        if self.bar is None:
            return
        if isinstance(item, Queued):
            self.bar.set_description(f"queued #{item.position}")
        elif isinstance(item, Started):
            self.bar.set_description(f"{item.width}x{item.height}@{item.fps:g}")
        elif isinstance(item, ChunkEvent):
            self.bar.set_postfix(chunk=item.index, refresh=False)
        elif isinstance(item, MediaChunk):
            self.bar.update(item.frame_count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def _record(args: argparse.Namespace) -> int:
    async with RollcastClient(args.server, api_key=api_key(args)) as client:
        owned = args.session is None
        if owned:
            if not args.prompt:
                raise InvalidRequest("give a PROMPT (or --session ID to record an existing session)")
            wanted = await _frames_wanted(client, args)
            session = await client.create_session(
                args.prompt,
                seed=args.seed,
                fps=args.fps,
                max_frames=wanted,
                format="fmp4",
                transition=args.transition,
                model=args.model,
            )
        else:
            session = await client.get_session(args.session)
            assert session.info is not None
            if session.info.format != "fmp4":
                raise InvalidRequest(f"session {session.id} streams {session.info.format}, not fmp4")
            wanted = session.info.max_frames
        print(f"session {session.id}", flush=True)
        print(
            f'change the prompt from another terminal: rollcast prompt {session.id} "NEW PROMPT"',
            file=sys.stderr,
            flush=True,
        )
        recorder = Mp4Recorder(args.output, fragmented=args.fragmented)
        progress = _Progress(wanted, args.quiet)
        try:
            ended = await _pump(session, recorder, progress, owned)
        finally:
            progress.close()
            summary = await asyncio.to_thread(recorder.close)
        _report(summary, ended)
        if ended is None:
            return 130
        return 0 if ended.reason in OK_REASONS else 1


async def _pump(session: Session, recorder: Mp4Recorder, progress: _Progress, owned: bool) -> Ended | None:
    """Record until the session ends; the first Ctrl-C/SIGTERM stops (or detaches), the
    second gives up waiting.  Returns the `Ended` event, or None when interrupted."""
    loop = asyncio.get_running_loop()
    interrupts = asyncio.Queue[int]()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupts.put_nowait, int(sig))

    async def consume() -> Ended | None:
        async with contextlib.aclosing(session.stream()) as stream:
            async for item in stream:
                progress.item(item)
                if isinstance(item, MediaChunk):
                    recorder.write(item)
                elif isinstance(item, PromptApplied):
                    progress.note(f"prompt applied from frame {item.frame}: {item.prompt!r}")
                elif isinstance(item, ErrorEvent):
                    progress.note(f"server error {item.code}: {item.message}")
                elif isinstance(item, Reconnected):
                    progress.note(f"reconnected (close code {item.close_code}, try {item.attempt})")
                elif isinstance(item, Ended):
                    return item
        return None

    consumer = asyncio.create_task(consume())
    try:
        waiter = asyncio.create_task(interrupts.get())
        done, _ = await asyncio.wait({consumer, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if consumer in done:
            waiter.cancel()
            return consumer.result()
        if not owned:
            progress.note("detaching (the session keeps running)")
            consumer.cancel()
            return None
        progress.note("stopping the session (Ctrl-C again to quit at once)")
        with contextlib.suppress(RollcastError):
            await session.stop()
        waiter = asyncio.create_task(interrupts.get())
        done, _ = await asyncio.wait(
            {consumer, waiter}, timeout=STOP_WAIT_S, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if consumer in done:
            return consumer.result()
        consumer.cancel()
        return None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if not consumer.done():
            consumer.cancel()
        # asyncio.wait, not `suppress(CancelledError): await`, so a cancel of _pump itself
        # still propagates; the consumer's own outcome was returned above or no longer matters.
        await asyncio.wait({consumer})
        if not consumer.cancelled():
            consumer.exception()


def _report(summary: RecordingSummary, ended: Ended | None) -> None:
    files = ", ".join(str(p) for p in summary.paths) or "nothing (no media received)"
    print(f"wrote {files}: {summary.frames} frames in {summary.chunks} chunks", file=sys.stderr)
    if summary.gaps:
        lost = sum(got - expected for expected, got in summary.gaps if got > expected)
        print(f"warning: {lost} frames were not received ({len(summary.gaps)} gaps)", file=sys.stderr)
    if ended is not None:
        print(f"session ended: {ended.reason} after {ended.frames} frames", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_record(args))
    except RollcastError as exc:
        return report_error("watch", exc)
