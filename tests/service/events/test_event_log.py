"""The event log over a real channel: publish (idempotent), list with filters and pages,
get, Subscribe with resume, and the outbox relay from a producing service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc import aio

from modelreg.events.v1 import event_pb2, event_service_pb2, event_service_pb2_grpc
from modelreg_events.app import spec_with
from modelreg_events.settings import EventsSettings
from service.events.kit import PRODUCER_SPEC, emit, producer_relay
from testkit import error_details, eventually, make_settings

SPEC = spec_with(EventsSettings(allow_private_targets=True, poll_interval_seconds=0.5))


def ev(subject: str, type_: str = "model_version.created", **data: Any) -> event_pb2.Event:
    e = event_pb2.Event(id=str(uuid.uuid4()), type=type_, subject=subject, actor="alice")
    e.data.update(data)
    return e


async def publish(
    stub: event_service_pb2_grpc.EventServiceAsyncStub, *events: event_pb2.Event
) -> list[int]:
    reply = await stub.PublishEvents(
        event_service_pb2.PublishEventsRequest(source="metadata", events=list(events))
    )
    return list(reply.sequences)


@pytest.fixture
async def stub(start_server, open_channel) -> event_service_pb2_grpc.EventServiceAsyncStub:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    channel = open_channel(server.address)
    stub: event_service_pb2_grpc.EventServiceAsyncStub = event_service_pb2_grpc.EventServiceStub(
        channel
    )
    return stub


async def test_publish_is_idempotent_on_event_id(stub) -> None:
    a, b = ev("models/a/versions/1"), ev("models/a/versions/2")
    first = await publish(stub, a, b)
    assert first[1] == first[0] + 1
    again = await stub.PublishEvents(
        event_service_pb2.PublishEventsRequest(source="metadata", events=[a, b])
    )
    assert list(again.sequences) == [0, 0]
    assert again.duplicate_count == 2
    listed = await stub.ListEvents(event_service_pb2.ListEventsRequest())
    assert [e.id for e in listed.events] == [a.id, b.id]
    got = await stub.GetEvent(event_service_pb2.GetEventRequest(name=f"events/{a.id}"))
    assert got.event.sequence == first[0]
    assert got.event.source == "metadata"
    assert got.event.actor == "alice"
    assert got.event.name == f"events/{a.id}"


async def test_list_filters_and_pages(stub) -> None:
    await publish(
        stub,
        ev("models/fraud/versions/1"),
        ev("models/fraud/versions/2", "model_version.alias_set"),
        ev("models/fraudster/versions/1"),
        ev("models/churn/versions/1"),
    )

    async def names(flt: str, page_size: int = 0) -> list[str]:
        out: list[str] = []
        token = ""
        while True:
            reply = await stub.ListEvents(
                event_service_pb2.ListEventsRequest(
                    filter=flt, page_size=page_size, page_token=token
                )
            )
            out += [e.subject for e in reply.events]
            token = reply.next_page_token
            if not token:
                return out

    assert await names('subject = "models/fraud/*"') == [
        "models/fraud/versions/1",
        "models/fraud/versions/2",
    ]
    assert await names('type = "model_version.alias_set"') == ["models/fraud/versions/2"]
    assert await names('subject = models/churn/versions/1 AND actor = "alice"') == [
        "models/churn/versions/1"
    ]
    assert await names('actor = "bob"') == []
    assert await names(
        'type IN ("model_version.alias_set", "run.created") OR subject = "models/churn/*"'
    ) == ["models/fraud/versions/2", "models/churn/versions/1"]
    assert len(await names("", page_size=1)) == 4
    assert await names('time >= "2000-01-01T00:00:00Z" AND sequence > 3') == [
        "models/churn/versions/1"
    ]


@pytest.mark.parametrize(
    ("flt", "why"),
    [
        ('type = "model_version.exploded"', "unknown event type"),
        ('colour = "red"', "unknown field"),
        ('time > "yesterday"', "RFC 3339"),
        ('subject = "a*b*"', "prefix"),
        ("type = ", "expected"),
    ],
)
async def test_bad_filter_is_invalid_argument_naming_filter(stub, flt: str, why: str) -> None:
    for call in (stub.ListEvents(event_service_pb2.ListEventsRequest(filter=flt)),):
        with pytest.raises(aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reason, _, violations = error_details(err.value)
        assert reason == "INVALID_FIELD"
        assert violations[0][0] == "filter"
        assert why in violations[0][1]
    stream = stub.Subscribe(event_service_pb2.SubscribeRequest(filter=flt))
    with pytest.raises(aio.AioRpcError) as err:
        await stream.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == "filter"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (event_service_pb2.ListEventsRequest(page_size=-1), "page_size"),
        (event_service_pb2.ListEventsRequest(page_token="garbage"), "page_token"),
        (event_service_pb2.ListEventsRequest(order_by="time"), "order_by"),
    ],
)
async def test_bad_list_arguments(stub, request_, field: str) -> None:
    with pytest.raises(aio.AioRpcError) as err:
        await stub.ListEvents(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[0] == "INVALID_FIELD"
    assert error_details(err.value)[2][0][0] == field


async def test_bad_publish_and_get(stub) -> None:
    bad = [
        (event_pb2.Event(id="nope", type="run.created", subject="x"), "events[0].id"),
        (event_pb2.Event(id=str(uuid.uuid4()), type="Bad", subject="x"), "events[0].type"),
        (event_pb2.Event(id=str(uuid.uuid4()), type="run.created"), "events[0].subject"),
    ]
    for event, field in bad:
        with pytest.raises(aio.AioRpcError) as err:
            await stub.PublishEvents(
                event_service_pb2.PublishEventsRequest(source="x", events=[event])
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(err.value)[2][0][0] == field
    with pytest.raises(aio.AioRpcError) as err:
        await stub.GetEvent(event_service_pb2.GetEventRequest(name="events/xyz"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(aio.AioRpcError) as err:
        await stub.GetEvent(event_service_pb2.GetEventRequest(name=f"events/{uuid.uuid4()}"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(err.value)[0] == "RESOURCE_NOT_FOUND"


async def read(stream, n: int) -> list[event_pb2.Event]:
    out: list[event_pb2.Event] = []
    async with asyncio.timeout(10):
        while len(out) < n:
            out.append((await stream.read()).event)
    return out


async def test_subscribe_resumes_after_a_sequence_missing_nothing(stub) -> None:
    seqs = await publish(stub, *(ev(f"models/m/versions/{i}") for i in range(1, 6)))
    stream = stub.Subscribe(event_service_pb2.SubscribeRequest(after_sequence=seqs[1]))
    got = await read(stream, 3)
    assert [e.sequence for e in got] == seqs[2:]
    live = await publish(stub, ev("models/m/versions/6"), ev("models/m/versions/7"))
    got = await read(stream, 2)
    assert [e.sequence for e in got] == live
    stream.cancel()
    # Resume from the last one acknowledged: the rest, once, in order.
    later = await publish(stub, ev("models/m/versions/8"))
    stream = stub.Subscribe(event_service_pb2.SubscribeRequest(after_sequence=live[0]))
    got = await read(stream, 2)
    assert [e.sequence for e in got] == [live[1], later[0]]
    stream.cancel()


async def test_subscribe_from_now_with_filter_skips_the_past_and_others(stub) -> None:
    await publish(stub, ev("models/a/versions/1"))
    stream = stub.Subscribe(
        event_service_pb2.SubscribeRequest(
            from_now=True, filter='subject = "models/b/*" AND type = "model_version.created"'
        )
    )
    # In effect once its headers arrive (they name where it starts).
    started = dict(await stream.initial_metadata())
    assert int(started["x-modelreg-subscribed-after"]) >= 1
    first = await publish(stub, ev("models/b/versions/1"))
    assert [e.sequence for e in await read(stream, 1)] == first
    # A concurrent burst of unrelated events, then the one we want.
    await asyncio.gather(*(publish(stub, ev(f"models/a/versions/{i}")) for i in range(2, 30)))
    wanted = await publish(stub, ev("models/b/versions/2"))
    got = await read(stream, 1)
    assert [e.sequence for e in got] == wanted
    stream.cancel()


async def test_concurrent_publishers_never_leave_a_subscriber_behind(stub) -> None:
    stream = stub.Subscribe(event_service_pb2.SubscribeRequest(from_now=True))
    await stream.initial_metadata()  # in effect from here on
    first = await publish(stub, ev("models/c/versions/0"))
    assert [e.sequence for e in await read(stream, 1)] == first
    batches = await asyncio.gather(
        *(publish(stub, *(ev(f"models/c{j}/versions/{i}") for i in range(5))) for j in range(20))
    )
    expected = sorted(s for batch in batches for s in batch)
    got = await read(stream, len(expected))
    assert [e.sequence for e in got] == expected
    stream.cancel()


async def test_relay_ships_outbox_rows_in_order_and_catches_up(start_server, open_channel) -> None:
    # The producer runs with its relay off: rows pile up as if the events service were down.
    producer = await start_server([PRODUCER_SPEC], settings=make_settings(relay_enabled=False))
    events_server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    pchannel = open_channel(producer.address)
    ids = await emit(pchannel, "models/r", 3, same_subject=True)
    ids += await emit(pchannel, "models/s", 2)
    # Events service unreachable: the relay fails and rolls back, nothing is marked sent.
    relay = producer_relay(producer, open_channel("127.0.0.1:1"), timeout=0.5)
    with pytest.raises(grpc.RpcError):
        await relay.run_once()
    assert (
        await producer._pools[0].fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 5
    )
    live = open_channel(events_server.address)
    relay = producer_relay(producer, live)
    assert await relay.drain() == 5
    assert await relay.run_once() == 0
    stub = event_service_pb2_grpc.EventServiceStub(live)
    listed = await stub.ListEvents(event_service_pb2.ListEventsRequest())
    assert [e.id for e in listed.events] == ids
    assert {e.source for e in listed.events} == {"producer"}
    # Re-shipping (a relay that died before marking) records nothing twice.
    await producer._pools[0].execute("UPDATE outbox SET sent_at = NULL")
    assert await relay.drain() == 5
    listed = await stub.ListEvents(event_service_pb2.ListEventsRequest())
    assert len(listed.events) == 5


async def test_running_relay_wakes_on_notify(start_server, open_channel) -> None:
    server = await start_server([SPEC, PRODUCER_SPEC])
    channel = open_channel(server.address)
    stub = event_service_pb2_grpc.EventServiceStub(channel)
    stream = stub.Subscribe(
        event_service_pb2.SubscribeRequest(from_now=True, filter='source = "producer"')
    )
    await stream.initial_metadata()  # in effect from here on
    first = await emit(channel, "models/first", 1)
    assert [e.id for e in await read(stream, 1)] == first
    ids = await emit(channel, "models/live", 3)
    got = await read(stream, 3)
    assert [e.id for e in got] == ids
    stream.cancel()


async def test_relay_hands_batches_to_the_events_service_in_its_own_process(
    start_server, open_channel
) -> None:
    server = await start_server([SPEC, PRODUCER_SPEC])
    channel = open_channel(server.address)
    stub = event_service_pb2_grpc.EventServiceStub(channel)
    stream = stub.Subscribe(event_service_pb2.SubscribeRequest(filter='source = "producer"'))
    ids = await emit(channel, "models/inproc", 2)
    got = await read(stream, 2)
    stream.cancel()
    assert [e.id for e in got] == ids
    assert {e.source for e in got} == {"producer"}
    # Shipped without a PublishEvents call through the server (the calls it did handle are
    # counted, so the absence means something).
    methods = {
        str(sample.labels["method"])
        for metric in server.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "modelreg_rpc_total"
    }
    assert any(m.endswith("/Emit") for m in methods)
    assert not any(m.endswith("/PublishEvents") for m in methods)


async def test_relay_prefers_the_local_events_service_and_falls_back_to_grpc(
    start_server, open_channel
) -> None:
    producer = await start_server([PRODUCER_SPEC], settings=make_settings(relay_enabled=False))
    events_server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    pool = producer._pools[0]
    ids = await emit(open_channel(producer.address), "models/local", 2)
    live = event_service_pb2_grpc.EventServiceStub(open_channel(events_server.address))
    handed: list[event_service_pb2.PublishEventsRequest] = []

    async def local(
        request: event_service_pb2.PublishEventsRequest, appended: Callable[[], None]
    ) -> event_service_pb2.PublishEventsResponse:
        handed.append(request)
        reply: event_service_pb2.PublishEventsResponse = await live.PublishEvents(request)
        return reply

    dead = open_channel("127.0.0.1:1")
    current: list[Any] = [local]
    relay = producer_relay(producer, dead, timeout=0.5, local=lambda: current[0])
    assert await relay.run_once() == 2
    assert [e.id for e in handed[0].events] == ids
    assert handed[0].source == "producer"
    # No local events service any more: the configured channel is used (here: unreachable),
    # and the claim is rolled back.
    current[0] = None
    await emit(open_channel(producer.address), "models/local", 1)
    with pytest.raises(grpc.RpcError):
        await relay.run_once()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1
    # A local call that fails (the log's database is gone, say) also leaves the rows unsent.

    async def broken(
        request: event_service_pb2.PublishEventsRequest, appended: Callable[[], None]
    ) -> event_service_pb2.PublishEventsResponse:
        raise OSError("events store unreachable")

    current[0] = broken
    with pytest.raises(OSError, match="unreachable"):
        await relay.run_once()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1
    current[0] = local
    assert await relay.drain() == 1


async def test_running_relay_overlaps_rounds_and_keeps_each_subject_in_order(
    start_server, open_channel
) -> None:
    producer = await start_server([PRODUCER_SPEC], settings=make_settings(relay_enabled=False))
    events_server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    pchannel = open_channel(producer.address)
    live = event_service_pb2_grpc.EventServiceStub(open_channel(events_server.address))
    first_call = asyncio.Event()
    release_first = asyncio.Event()
    in_flight = 0
    most_in_flight = 0
    calls = 0

    async def slow_first(
        request: event_service_pb2.PublishEventsRequest, appended: Callable[[], None]
    ) -> event_service_pb2.PublishEventsResponse:
        # The first round's events are appended, then its flush stalls until released.
        nonlocal in_flight, most_in_flight, calls
        calls += 1
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            reply: event_service_pb2.PublishEventsResponse = await live.PublishEvents(request)
            appended()
            if calls == 1:
                first_call.set()
                await release_first.wait()
            return reply
        finally:
            in_flight -= 1

    relay = producer_relay(
        producer,
        open_channel("127.0.0.1:1"),
        timeout=10,
        # Far beyond the test: every round here is started by a NOTIFY or a finished round.
        poll_interval=60,
        concurrency=2,
        local=lambda: slow_first,
    )
    await relay.start()
    try:
        held = await emit(pchannel, "models/held", 1, same_subject=True)
        await asyncio.wait_for(first_call.wait(), 10)
        # While the first round waits for its flush, other subjects' events go out at once...
        other = await emit(pchannel, "models/other", 2)
        # ...but a later event of the held subject waits until the first round is done.
        after = await emit(pchannel, "models/held", 1, same_subject=True)

        async def shipped() -> list[str]:
            listed = await live.ListEvents(event_service_pb2.ListEventsRequest())
            return [e.id for e in listed.events]

        async def others_shipped() -> bool:
            return set(await shipped()) == set(held + other)

        await eventually(others_shipped, within=10)
        assert most_in_flight == 2
        release_first.set()

        # The held-back event goes as soon as the first round is done, not at the next poll.
        async def all_shipped() -> bool:
            return len(await shipped()) == 4

        await eventually(all_shipped, within=10)
        # The log has them in the order they were committed, across subjects too.
        assert await shipped() == held + other + after
        assert (
            await producer._pools[0].fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            == 0
        )
    finally:
        release_first.set()
        await relay.stop()


async def test_after_a_database_crash_sequences_move_past_what_an_unflushed_tail_used(
    start_server, open_channel
) -> None:
    # Appends commit before their WAL flush; a PostgreSQL crash may lose numbers subscribers
    # saw. The first append after a crash moves the sequence far ahead instead.
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    stub = event_service_pb2_grpc.EventServiceStub(open_channel(server.address))
    pool = server._pools[0]
    # A new log starts at 1: there is no earlier tail to step over.
    assert await publish(stub, ev("models/e/versions/1")) == [1]
    assert await publish(stub, ev("models/e/versions/2")) == [2]
    # What crash recovery does to the unlogged marker.
    await pool.execute("TRUNCATE log_alive")
    [after_crash] = await publish(stub, ev("models/e/versions/3"))
    assert after_crash > 2 + 10_000_000
    assert await pool.fetchval("SELECT count(*) FROM log_alive") == 1
    assert await publish(stub, ev("models/e/versions/4")) == [after_crash + 1]
    # The gap is only numbers: resuming from before it misses nothing.
    stream = stub.Subscribe(event_service_pb2.SubscribeRequest(after_sequence=1))
    got = await read(stream, 3)
    stream.cancel()
    assert [e.sequence for e in got] == [2, after_crash, after_crash + 1]
    assert [e.subject for e in got] == [f"models/e/versions/{i}" for i in (2, 3, 4)]
