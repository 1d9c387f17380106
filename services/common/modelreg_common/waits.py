"""Waiting that stays cancellable: on an event with a time limit, and on a background task
being stopped.

On Python 3.11 `asyncio.wait_for` can swallow a cancellation that arrives just as the awaited
event fires; a worker loop built on it may then never stop. `asyncio.timeout` has no such race.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """True if `event` was set within `seconds`, False if the time ran out."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task (None: nothing to stop) and wait until it has ended; its
    cancellation is the expected end, anything else it raised is raised here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
