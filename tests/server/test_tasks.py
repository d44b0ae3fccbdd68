"""`server.tasks`: waiting for a task to end never swallows the waiter's own cancellation, never
raises the task's outcome, and stops waiting at its timeout."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from server.tasks import cancel_and_settle, settle


async def _shield_from_cancel(stop: asyncio.Event) -> None:
    """A task that ignores its first cancel until `stop` is set (a slow shutdown)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await stop.wait()


async def test_a_cancel_of_the_waiter_propagates() -> None:
    stop = asyncio.Event()
    slow = asyncio.create_task(_shield_from_cancel(stop))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cancel_and_settle(slow))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert waiter.cancelled()
    # the old pattern swallows the same cancel: the waiter would finish normally instead
    swallowing = asyncio.create_task(_suppressing_wait(slow))
    await asyncio.sleep(0.05)
    swallowing.cancel()
    stop.set()
    await asyncio.wait({swallowing})
    assert not swallowing.cancelled()
    assert await settle(slow, timeout=5) is True


async def _suppressing_wait(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_outcomes_of_the_task_are_not_raised() -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    failing = asyncio.create_task(fail())
    assert await settle(failing) is True
    assert failing.done() and isinstance(failing.exception(), RuntimeError)

    sleeper = asyncio.create_task(asyncio.sleep(3600))
    assert await cancel_and_settle(sleeper) is True
    assert sleeper.cancelled()


async def test_timeout_leaves_the_task_running() -> None:
    stop = asyncio.Event()
    slow = asyncio.create_task(_shield_from_cancel(stop))
    await asyncio.sleep(0)
    assert await cancel_and_settle(slow, timeout=0.05) is False
    assert not slow.done()
    stop.set()
    assert await settle(slow, timeout=5) is True
