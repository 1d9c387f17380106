"""A metadata server over a fresh database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpc import aio

from modelreg_metadata.app import SPEC
from service.metadata.kit import Stubs, stubs_for


@pytest.fixture
async def md(start_server: Any) -> AsyncIterator[Stubs]:
    server = await start_server([SPEC])
    async with aio.insecure_channel(server.address) as channel:
        yield stubs_for(channel, server)
