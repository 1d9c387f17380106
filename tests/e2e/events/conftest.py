from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from grpc import aio


@pytest.fixture
async def open_channel() -> AsyncIterator[Callable[[str], aio.Channel]]:
    """`open_channel(address)`: a channel closed when the test ends, so no client outlives
    its test and keeps reconnecting to a port a later test's server may get."""
    channels: list[aio.Channel] = []

    def make(address: str) -> aio.Channel:
        channel = aio.insecure_channel(address)
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        await channel.close()
