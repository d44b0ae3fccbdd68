"""Waiting for an asyncio task to end without swallowing the waiter's own cancellation.

The tempting `with suppress(CancelledError): await task` also hides a cancel aimed at the
*caller* (a shutdown that must itself be stoppable would then carry on as if nothing happened).
`asyncio.wait` keeps the two apart: it returns when the task ends or the timeout passes,
never raises the task's outcome, and raises `CancelledError` only when the caller is cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def settle(task: asyncio.Task[Any], timeout: float | None = None) -> bool:
    """Wait (at most `timeout` s) for `task` to end; True if it did. The task's exception, if
    any, is marked retrieved (it was logged where it happened); the task is not cancelled."""
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        return False
    if not task.cancelled():
        task.exception()
    return True


async def cancel_and_settle(task: asyncio.Task[Any], timeout: float | None = None) -> bool:
    """Cancel `task` and wait (at most `timeout` s) for it to end; True if it did."""
    task.cancel()
    return await settle(task, timeout)
