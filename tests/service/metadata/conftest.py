"""A metadata server over a fresh database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpc import aio

from modelreg_metadata.app import SPEC
from service.metadata.kit import Stubs, stubs_for
from testkit import make_settings


@pytest.fixture
async def md(start_server: Any) -> AsyncIterator[Stubs]:
    # The outbox relay is off: these tests read the outbox table itself, and no events
    # service runs here to receive from it.
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    async with aio.insecure_channel(server.address) as channel:
        yield stubs_for(channel, server)
