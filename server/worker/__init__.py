"""The generation worker (`rollcast worker`, and the worker half of `rollcast serve`).

`Worker(settings, broker)` claims sessions from the broker, runs them batched on one engine
thread, encodes each chunk beside it and publishes events and media in protocol order; see
worker.py for the task layout and shutdown, stream.py for the per-session ordering rules.
"""

from server.worker.worker import Worker

__all__ = ["Worker"]
