"""Prometheus metrics (prefix rollcast_, base units, no per-session labels).

One module-level registry per process: in `rollcast serve` the API and the worker share it; a
separate `rollcast worker` exposes its own on --metrics-port. Label values are bounded sets
(reasons, outcomes, stages, formats), never session ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# -- worker side ------------------------------------------------------------------------------
TIME_TO_FIRST_FRAME = Histogram(
    "rollcast_time_to_first_frame_seconds",
    "Session creation to its first encoded chunk being published.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CHUNK_SECONDS = Histogram(
    "rollcast_chunk_generation_seconds",
    "Seconds per chunk by stage (denoise, decode, encode, total).",
    ["stage"],
    buckets=FAST_BUCKETS,
    registry=REGISTRY,
)
FRAMES_GENERATED = Counter(
    "rollcast_frames_generated_total", "Video frames generated and published.", registry=REGISTRY
)
DENOISE_STEPS = Counter(
    "rollcast_denoise_steps_total",
    "Denoising steps run (model passes, cache refresh excluded).",
    registry=REGISTRY,
)
WORKER_SESSIONS = Gauge(
    "rollcast_worker_sessions", "Sessions held by this worker process.", registry=REGISTRY
)
WORKER_CAPACITY = Gauge(
    "rollcast_worker_capacity", "Sessions this worker process can hold at once.", registry=REGISTRY
)
GPU_MEMORY = Gauge(
    "rollcast_gpu_memory_bytes",
    "Accelerator memory allocated by this process (0 on CPU).",
    ["kind"],
    registry=REGISTRY,
)

# -- front end --------------------------------------------------------------------------------
SESSIONS_ACTIVE = Gauge(
    "rollcast_sessions_active", "Sessions starting, running or paused (all workers).", registry=REGISTRY
)
SESSIONS_QUEUED = Gauge("rollcast_sessions_queued", "Sessions waiting for a worker.", registry=REGISTRY)
WORKERS_READY = Gauge("rollcast_workers_ready", "Live workers that accept sessions.", registry=REGISTRY)
QUEUE_WAIT = Histogram(
    "rollcast_queue_wait_seconds",
    "Session creation to a worker starting it.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
SESSIONS_TOTAL = Counter(
    "rollcast_sessions_total",
    "Sessions by outcome (completed, stopped, deleted, failed, ...).",
    ["outcome"],
    registry=REGISTRY,
)
FRAMES_DROPPED = Counter(
    "rollcast_frames_dropped_total",
    "Frames not delivered to a viewer, by reason.",
    ["reason"],
    registry=REGISTRY,
)
VIEWERS = Gauge("rollcast_viewers", "Connected WebSocket viewers.", registry=REGISTRY)
VIEWER_QUEUE_DEPTH = Histogram(
    "rollcast_viewer_send_queue_depth",
    "Messages waiting in a viewer's send queue (sampled per send).",
    buckets=(0, 1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
RELAY_LATENCY = Histogram(
    "rollcast_relay_latency_seconds",
    "Worker publish to the viewer's send of a media message.",
    buckets=FAST_BUCKETS,
    registry=REGISTRY,
)
HTTP_ERRORS = Counter(
    "rollcast_http_errors_total", "Error responses by stable error code.", ["code"], registry=REGISTRY
)
