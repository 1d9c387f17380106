"""Waiting on an event with a time limit, in a way that stays cancellable.

On Python 3.11 `asyncio.wait_for` can swallow a cancellation that arrives just as the awaited
event fires; a worker loop built on it may then never stop. `asyncio.timeout` has no such race.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """True if `event` was set within `seconds`, False if the time ran out."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
