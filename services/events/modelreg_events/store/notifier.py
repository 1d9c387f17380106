"""Wake-ups from the log's NOTIFY (payload: the highest appended sequence), shared by every
subscriber and the delivery workers of this process over one LISTEN connection."""

from __future__ import annotations

import asyncio
import contextlib

from modelreg_common.relay import Listener
from modelreg_common.waits import wait_event
from modelreg_events.store.events import NOTIFY_CHANNEL


class LogNotifier:
    def __init__(self, dsn: str) -> None:
        self._latest = 0
        self.generation = 0
        self._event = asyncio.Event()
        self._listener = Listener(dsn, NOTIFY_CHANNEL, self._on_payload, self._pulse, name="events")

    @property
    def latest(self) -> int:
        return self._latest

    @property
    def connected(self) -> asyncio.Event:
        return self._listener.connected

    def start(self, latest: int) -> None:
        self._latest = max(self._latest, latest)
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()
        self._pulse()

    def announce(self, sequence: int) -> None:
        """A sequence this process appended and committed itself."""
        if sequence > self._latest:
            self._latest = sequence
            self._pulse()

    def _on_payload(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._latest = max(self._latest, int(payload))
        self._pulse()

    def _pulse(self) -> None:
        # Swap before setting: waiters hold the old event, later waiters get a fresh one.
        self.generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_change(self, generation: int, max_wait: float) -> None:
        """Return once any wake-up happened after `generation` was read, or after `max_wait`."""
        if self.generation != generation:
            return
        event = self._event
        await wait_event(event, max_wait)

    async def wait(self, beyond: int, max_wait: float) -> None:
        """Return once a sequence above `beyond` is announced, on any other wake-up (a
        redelivery, a reconnect), or after `max_wait` (the polling fallback)."""
        if self._latest > beyond:
            return
        event = self._event
        await wait_event(event, max_wait)
