"""Serving latency through Redis: time to first frame and per-chunk relay latency.

    python -m bench.serve                       # 1 and 50 viewers, test preset, real Redis
    python -m bench.serve --viewers 1,10,50 --chunks 40 --preset tiny --json out.json

Starts `rollcast api` and `rollcast worker` as separate processes on a real Redis (the
launcher of the end-to-end tests, tests/e2e/deployment.py), then for each viewer count opens
one session watched by N WebSocket viewers.

- time to first frame: POST /v1/sessions -> the first media fragment at a viewer (5 runs);
- relay latency: the worker's publish of a chunk's fragment (`published_at` in its Redis
  stream entry) -> the viewer receiving it, over every chunk and viewer.

All processes share this machine's cores, so the numbers include scheduling noise; medians
and p99 are reported. The worker is paced to real time (the default), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))  # the process launcher shared with the e2e tests
from deployment import REDIS_URL, Deployment, deployment  # noqa: E402

from server.broker import BrokerConfig, RedisBroker  # noqa: E402
from server.media.framing import MediaKind, unpack_media  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def watch(url: str, received: dict[int, float], first: asyncio.Future[float]) -> None:
    async with connect(url, max_size=None, compression=None) as ws:
        async for message in ws:
            if isinstance(message, bytes):
                now = time.time()
                m = unpack_media(message)
                if m.kind == MediaKind.FRAGMENT:
                    received.setdefault(m.chunk_index, now)
                    if not first.done():
                        first.set_result(now)
            elif json.loads(message)["type"] == "ended":
                return


async def one_session(d: Deployment, viewers: int, chunks: int, fps: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=d.url, timeout=60) as http:
        t0 = time.time()
        r = await http.post(
            "/v1/sessions",
            json={"prompt": "a red circle moving left", "max_frames": 9 + 12 * (chunks - 1), "fps": fps},
        )
        sid = r.json()["id"]
        url = f"{d.ws_url}/v1/sessions/{sid}/stream"
        loop = asyncio.get_running_loop()
        firsts = [loop.create_future() for _ in range(viewers)]
        received: list[dict[int, float]] = [{} for _ in range(viewers)]
        await asyncio.gather(*(watch(url, received[i], firsts[i]) for i in range(viewers)))
    prefix = d.env["ROLLCAST_KEY_PREFIX"]
    broker = RedisBroker.from_url(REDIS_URL, BrokerConfig(prefix=prefix))
    try:
        entries = await broker.read_output(sid, after_id="0", count=10_000)
    finally:
        await broker.close()
    published = {
        e.meta["chunk"]: float(e.meta["published_at"])
        for e in entries
        if e.kind == "media" and e.meta.get("kind") == "fragment"
    }
    latencies = [got[c] - published[c] for got in received for c in got if c in published]
    return {"ttff_s": firsts[0].result() - t0, "latencies_s": latencies}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    env = {
        "ROLLCAST_PRESET": args.preset,
        "ROLLCAST_MAX_SESSIONS": "1",
        "ROLLCAST_TORCH_THREADS": str(args.threads),
        "ROLLCAST_LOG_LEVEL": "WARNING",
        "ROLLCAST_WS_SEND_BUFFER_BYTES": str(64 * 1024),
        "ROLLCAST_VIEWER_QUEUE_MESSAGES": "32",
    }
    with deployment("redis", env) as d:
        ttffs = [(await one_session(d, 1, 2, args.fps))["ttff_s"] for _ in range(args.ttff_runs)]
        for n in args.viewers:
            r = await one_session(d, n, args.chunks, args.fps)
            lat = r["latencies_s"]
            results.append(
                {
                    "viewers": n,
                    "chunks": args.chunks,
                    "samples": len(lat),
                    "relay_p50_ms": 1e3 * percentile(lat, 0.5),
                    "relay_p99_ms": 1e3 * percentile(lat, 0.99),
                    "ttff_median_s": statistics.median(ttffs),
                    "ttff_runs_s": ttffs,
                    "preset": args.preset,
                }
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", default="1,50", help="comma-separated viewer counts")
    parser.add_argument("--chunks", type=int, default=30, help="chunks per measured session")
    parser.add_argument("--preset", default="test", help="model preset of the worker")
    parser.add_argument("--fps", type=int, default=16, help="session frame rate (pacing)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the worker")
    parser.add_argument("--ttff-runs", type=int, default=5, help="sessions timed for first frame")
    parser.add_argument("--json", default=None, help="write results here")
    args = parser.parse_args(argv)
    args.viewers = [int(v) for v in args.viewers.split(",")]
    results = asyncio.run(run(args))
    print(f"{'viewers':>7} {'samples':>8} {'relay p50 ms':>13} {'relay p99 ms':>13} {'TTFF median s':>14}")
    for r in results:
        print(
            f"{r['viewers']:>7} {r['samples']:>8} {r['relay_p50_ms']:>13.1f} {r['relay_p99_ms']:>13.1f} "
            f"{r['ttff_median_s']:>14.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
