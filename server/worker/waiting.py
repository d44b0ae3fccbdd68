"""Waiting for an `asyncio.Event` with a timeout, without losing a cancellation.

Python 3.11's ``asyncio.wait_for(event.wait(), t)`` swallows a cancellation that arrives at the
moment the event is set (it returns the result instead of raising), so a loop cancelled at
shutdown could keep running forever. ``asyncio.timeout`` counts cancellations properly.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """True if ``event`` was set within ``timeout`` seconds, False on timeout."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
