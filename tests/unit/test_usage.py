"""UsageRecorder on its own, against a scripted UsageService on a loopback channel: counting
keys, batches and their ids, retries that count once, the bound on held keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from modelreg.events.v1 import usage_pb2, usage_service_pb2, usage_service_pb2_grpc
from modelreg_common.context import CallInfo, Principal, bind_call, unbind_call
from modelreg_common.usage import ALIAS_RESOLUTION, DOWNLOAD, UsageRecorder

H0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
Counted = dict[tuple[str, str, int, datetime], int]


@dataclass
class FakeUsage(usage_service_pb2_grpc.UsageServiceServicer):
    """Applies each batch id once, like the real service; `script` pops the fate of the next
    call: "ok", "down" (refused before applying), "lost" (applied, answer lost), "invalid"."""

    script: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    counted: Counted = field(default_factory=dict)
    calls: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def RecordUsage(
        self, request: usage_service_pb2.RecordUsageRequest, context: Any
    ) -> usage_service_pb2.RecordUsageResponse:
        self.calls += 1
        fate = self.script.pop(0) if self.script else "ok"
        if fate == "down":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "events is down")
        if fate == "invalid":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "records[0].count")
        applied = request.batch_id not in self.batches
        if applied:
            self.batches.append(request.batch_id)
            for r in request.records:
                key = (r.principal, r.model_version, r.kind, r.hour_start_time.ToDatetime(UTC))
                self.counted[key] = self.counted.get(key, 0) + r.count
        self.arrived.set()
        if fate == "lost":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        return usage_service_pb2.RecordUsageResponse(applied=applied)

    async def ListUsage(
        self, request: usage_service_pb2.ListUsageRequest, context: Any
    ) -> usage_service_pb2.ListUsageResponse:
        raise NotImplementedError("the recorder never lists")


@dataclass
class Clock:
    now: datetime = H0 + timedelta(minutes=12)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeUsage, aio.Channel]]:
    service = FakeUsage()
    server = aio.server()
    usage_service_pb2_grpc.add_UsageServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    yield service, channel
    await channel.close()
    await server.stop(0)


def recorder(channel: aio.Channel, clock: Clock | None = None, **kw: Any) -> UsageRecorder:
    kw.setdefault("registry", CollectorRegistry())
    return UsageRecorder(lambda: channel, timeout=5, clock=clock or Clock(), **kw)


@contextlib.contextmanager
def caller(subject: str, method: str = "token") -> Iterator[None]:
    token = bind_call(CallInfo("/m", "r", Principal(subject, method=method), peer="ipv4:1.2.3.4:5"))
    try:
        yield
    finally:
        unbind_call(token)


V1, V2 = "models/fraud/versions/1", "models/fraud/versions/2"


async def test_uses_are_counted_per_principal_version_kind_and_hour(fake) -> None:
    service, channel = fake
    clock = Clock()
    usage = recorder(channel, clock)
    with caller("alice"):
        for _ in range(3):
            usage.record(V1, DOWNLOAD)
        usage.record(V1, ALIAS_RESOLUTION)
        usage.record(V2, DOWNLOAD)
    with caller("bob"):
        usage.record(V1, DOWNLOAD)
    clock.now = H0 + timedelta(hours=1, minutes=1)
    with caller("alice"):
        usage.record(V1, DOWNLOAD)
    assert await usage.flush() == 1
    assert service.counted == {
        ("alice", V1, DOWNLOAD, H0): 3,
        ("alice", V1, ALIAS_RESOLUTION, H0): 1,
        ("alice", V2, DOWNLOAD, H0): 1,
        ("bob", V1, DOWNLOAD, H0): 1,
        ("alice", V1, DOWNLOAD, H0 + timedelta(hours=1)): 1,
    }
    assert usage.pending == {}
    assert await usage.flush() == 0
    assert service.calls == 1


async def test_internal_calls_and_bad_records_are_not_counted(fake) -> None:
    service, channel = fake
    usage = recorder(channel)
    usage.record(V1, DOWNLOAD)  # outside any RPC: the system's own work
    with caller("metadata", method="internal"):
        usage.record(V1, DOWNLOAD)
    with caller("alice"):
        usage.record("models/fraud", DOWNLOAD)
        usage.record("artifacts/x", DOWNLOAD)
        usage.record(V1, usage_pb2.USAGE_KIND_UNSPECIFIED)
    assert usage.pending == {}
    assert await usage.flush() == 0
    assert service.calls == 0


async def test_a_failed_flush_keeps_the_counts_for_the_next(fake) -> None:
    service, channel = fake
    usage = recorder(channel)
    service.script = ["down", "down"]
    with caller("alice"):
        usage.record(V1, DOWNLOAD)
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            await usage.flush()
    with caller("alice"):
        usage.record(V1, DOWNLOAD)
    assert sum(usage.pending.values()) == 2
    assert await usage.flush() == 2  # the held batch, then the new counts
    assert service.counted == {("alice", V1, DOWNLOAD, H0): 2}
    assert usage.pending == {}


async def test_a_retry_after_a_lost_answer_reuses_the_batch_id_and_counts_once(fake) -> None:
    service, channel = fake
    usage = recorder(channel)
    service.script = ["lost"]
    with caller("alice"):
        usage.record(V1, DOWNLOAD)
        usage.record(V1, DOWNLOAD)
    with pytest.raises(grpc.RpcError):
        await usage.flush()
    assert service.counted == {("alice", V1, DOWNLOAD, H0): 2}  # it did land
    assert await usage.flush() == 1
    assert len(service.batches) == 1
    assert service.calls == 2
    assert service.counted == {("alice", V1, DOWNLOAD, H0): 2}


async def test_a_refused_batch_is_dropped_and_the_rest_go_on(fake) -> None:
    service, channel = fake
    usage = recorder(channel)
    service.script = ["down"]
    with caller("alice"):
        usage.record(V1, DOWNLOAD)
    with pytest.raises(grpc.RpcError):
        await usage.flush()
    with caller("bob"):
        usage.record(V2, DOWNLOAD)
    service.script = ["invalid"]
    assert await usage.flush() == 2
    assert service.counted == {("bob", V2, DOWNLOAD, H0): 1}
    assert usage.pending == {}


async def test_held_keys_are_bounded_and_drops_are_counted(fake) -> None:
    service, channel = fake
    registry = CollectorRegistry()
    usage = recorder(channel, max_keys=2, registry=registry)

    def dropped() -> float | None:
        return registry.get_sample_value("modelreg_usage_dropped_total")

    service.script = ["down"]
    with caller("alice"):
        usage.record(V1, DOWNLOAD)
        usage.record(V2, DOWNLOAD)
        usage.record(V1, ALIAS_RESOLUTION)  # a third key: dropped
        usage.record(V1, DOWNLOAD)  # a held key still counts
    assert dropped() == 1
    with pytest.raises(grpc.RpcError):
        await usage.flush()
    with caller("bob"):
        usage.record(V1, DOWNLOAD)  # keys in the unsent batch still count towards the bound
    assert dropped() == 2
    assert await usage.flush() == 1
    with caller("bob"):
        usage.record(V1, DOWNLOAD)  # room again once acknowledged
    assert await usage.flush() == 1
    assert service.counted == {
        ("alice", V1, DOWNLOAD, H0): 2,
        ("alice", V2, DOWNLOAD, H0): 1,
        ("bob", V1, DOWNLOAD, H0): 1,
    }


async def test_many_keys_go_in_batches_of_at_most_ten_thousand(fake) -> None:
    service, channel = fake
    usage = recorder(channel)
    with caller("alice"):
        for v in range(1, 10_502):
            usage.record(f"models/m/versions/{v}", DOWNLOAD)
    assert await usage.flush() == 2
    assert len(service.batches) == 2
    assert len(service.counted) == 10_501


async def test_the_background_loop_flushes_and_stop_flushes_the_rest(fake) -> None:
    service, channel = fake
    usage = recorder(channel, flush_seconds=0.05)
    await usage.start()
    try:
        with caller("alice"):
            usage.record(V1, DOWNLOAD)
        async with asyncio.timeout(5):
            await service.arrived.wait()
        with caller("alice"):
            usage.record(V2, DOWNLOAD)
    finally:
        await usage.stop()
    assert service.counted == {("alice", V1, DOWNLOAD, H0): 1, ("alice", V2, DOWNLOAD, H0): 1}
    assert usage.pending == {}
