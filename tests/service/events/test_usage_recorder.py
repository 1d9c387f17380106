"""UsageRecorder against the real events service: counts arrive; while the service is stopped
they stay in the recorder and arrive once it is back; a flush whose answer was lost is retried
under the same batch id and counted once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from modelreg.events.v1 import usage_service_pb2, usage_service_pb2_grpc
from modelreg_common.context import CallInfo, Principal, bind_call, unbind_call
from modelreg_common.usage import ALIAS_RESOLUTION, DOWNLOAD, UsageRecorder
from modelreg_events.app import spec_with
from modelreg_events.settings import EventsSettings
from testkit import make_settings

SPEC = spec_with(EventsSettings(allow_private_targets=True, poll_interval_seconds=0.5))
H0 = datetime(2026, 11, 30, 6, tzinfo=UTC)
V1 = "models/fraud/versions/1"
# Reconnect quickly once the restarted server listens again.
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]


@contextlib.contextmanager
def caller(subject: str) -> Iterator[None]:
    token = bind_call(CallInfo("/m", "r", Principal(subject)))
    try:
        yield
    finally:
        unbind_call(token)


def recorder(channel: aio.Channel) -> UsageRecorder:
    return UsageRecorder(lambda: channel, timeout=2, clock=lambda: H0, registry=CollectorRegistry())


async def counts(channel: aio.Channel) -> dict[tuple[str, str, int], int]:
    stub = usage_service_pb2_grpc.UsageServiceStub(channel)
    reply = await stub.ListUsage(usage_service_pb2.ListUsageRequest(parent="models/fraud"))
    return {(r.principal, r.model_version, r.kind): r.count for r in reply.usage_records}


async def test_counts_survive_a_stopped_events_service_and_arrive_once(
    start_server, open_channel
) -> None:
    settings = make_settings(relay_enabled=False)
    first = await start_server([SPEC], settings=settings)
    address = first.address
    channel = aio.insecure_channel(address, options=FAST_RECONNECT)
    try:
        usage = recorder(channel)
        with caller("alice"):
            usage.record(V1, DOWNLOAD)
            usage.record(V1, DOWNLOAD)
        assert await usage.flush() == 1
        await first.stop(0)

        with caller("alice"):
            usage.record(V1, DOWNLOAD)
        with caller("bob"):
            usage.record(V1, ALIAS_RESOLUTION)
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as err:
                await usage.flush()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert sum(usage.pending.values()) == 2

        # The same database behind a new server on the same address: the service came back.
        second = await start_server(
            [SPEC], settings=make_settings(listen=address, relay_enabled=False)
        )
        assert second.address == address
        async with asyncio.timeout(10):
            await channel.channel_ready()
        assert await usage.flush() == 1
        assert usage.pending == {}
        assert await counts(open_channel(address)) == {
            ("alice", V1, DOWNLOAD): 3,
            ("bob", V1, ALIAS_RESOLUTION): 1,
        }
    finally:
        await channel.close()


class LoseFirstAnswer(aio.UnaryUnaryClientInterceptor):
    """Lets the first call reach the server, then reports it failed: an answer lost on the
    way back, after the server applied the batch."""

    def __init__(self) -> None:
        self.lost = 0

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(details, request)
        if self.lost == 0:
            self.lost += 1
            await call
            raise aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, aio.Metadata(), aio.Metadata(), "answer lost"
            )
        return call


async def test_a_flush_whose_answer_was_lost_is_counted_once(start_server, open_channel) -> None:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    lossy = LoseFirstAnswer()
    channel = aio.insecure_channel(server.address, interceptors=[lossy])
    try:
        usage = recorder(channel)
        with caller("alice"):
            for _ in range(5):
                usage.record(V1, DOWNLOAD)
        with pytest.raises(grpc.RpcError):
            await usage.flush()
        assert lossy.lost == 1
        assert await counts(open_channel(server.address)) == {("alice", V1, DOWNLOAD): 5}
        assert await usage.flush() == 1
        assert await counts(open_channel(server.address)) == {("alice", V1, DOWNLOAD): 5}
    finally:
        await channel.close()
