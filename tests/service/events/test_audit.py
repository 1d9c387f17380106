"""The event log as the audit trail: every event carries the actor and the network peer of the
call that made the change (outbox -> relay -> log), "what did X change" is a filter, and a
caller who may read only some models sees only their events, in every read path."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import grpc
import pytest

from modelreg.events.v1 import (
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    webhook_pb2,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from modelreg_common.access import Access, Role
from modelreg_common.context import CallInfo, Principal, bind_call, unbind_call
from modelreg_common.errors import NotFound
from modelreg_common.relay import OutboxRelay
from modelreg_events.app import EventsComponent, spec_with
from modelreg_events.settings import EventsSettings
from modelreg_events.transport.servicers import EventServicer, WebhookServicer
from service.events.kit import PRODUCER_SPEC, Receiver, emit
from testkit import make_settings

SPEC = spec_with(EventsSettings(allow_private_targets=True, poll_interval_seconds=0.2))
PEER = re.compile(r"^ipv4:127\.0\.0\.1:\d+$")


def ev(subject: str, actor: str = "bob", type_: str = "model_version.created") -> event_pb2.Event:
    return event_pb2.Event(id=str(uuid.uuid4()), type=type_, subject=subject, actor=actor)


async def test_events_carry_the_peer_and_actor_of_the_change(start_server, open_channel) -> None:
    server = await start_server([SPEC, PRODUCER_SPEC], settings=make_settings(relay_enabled=False))
    channel = open_channel(server.address)
    stub = event_service_pb2_grpc.EventServiceStub(channel)
    ids = await emit(channel, "models/fraud", 2)
    # The producer's relay, run by hand so the test need not wait for its loop.
    relay = OutboxRelay(
        pool=server._pools[1],
        dsn=server.dsn,
        schema="producer",
        source="producer",
        channel=lambda: channel,
        timeout=5,
    )
    assert await relay.drain() == 2
    listed = await stub.ListEvents(
        event_service_pb2.ListEventsRequest(filter='source = "producer"')
    )
    assert [e.id for e in listed.events] == ids
    for event in listed.events:
        # Local mode: the caller is the local principal, connecting over loopback.
        assert event.actor == "local"
        assert PEER.match(event.peer), event.peer
    got = await stub.GetEvent(event_service_pb2.GetEventRequest(name=f"events/{ids[0]}"))
    assert got.event.peer == listed.events[0].peer
    by_peer = await stub.ListEvents(
        event_service_pb2.ListEventsRequest(filter=f'peer = "{listed.events[0].peer}"')
    )
    assert [e.id for e in by_peer.events] == ids


async def test_what_did_x_change_is_an_actor_filter(start_server, open_channel) -> None:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    stub = event_service_pb2_grpc.EventServiceStub(open_channel(server.address))
    mine = [ev("models/a/versions/1", "alice"), ev("models/b", "alice", "registered_model.updated")]
    theirs = [ev("models/a/versions/2", "bob"), ev("models/c", "carol")]
    await stub.PublishEvents(
        event_service_pb2.PublishEventsRequest(
            source="metadata", events=[mine[0], theirs[0], mine[1], theirs[1]]
        )
    )
    listed = await stub.ListEvents(
        event_service_pb2.ListEventsRequest(filter='actor = "alice"', order_by="sequence desc")
    )
    assert [e.id for e in listed.events] == [mine[1].id, mine[0].id]
    assert {e.actor for e in listed.events} == {"alice"}


async def test_a_published_peer_is_stored_and_bounded(start_server, open_channel) -> None:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    stub = event_service_pb2_grpc.EventServiceStub(open_channel(server.address))
    event = ev("models/a")
    event.peer = "ipv6:[::1]:4242"
    await stub.PublishEvents(event_service_pb2.PublishEventsRequest(source="x", events=[event]))
    got = await stub.GetEvent(event_service_pb2.GetEventRequest(name=f"events/{event.id}"))
    assert got.event.peer == "ipv6:[::1]:4242"
    long = ev("models/a")
    long.peer = "p" * 513
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.PublishEvents(event_service_pb2.PublishEventsRequest(source="x", events=[long]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[0].peer" in (err.value.details() or "")


# -- what a caller may read ------------------------------------------------------------------
# The interceptor binds the caller's Access to the call; here the servicers are called
# directly under a bound Access, so the narrowing is tested whatever the interceptor does.


@contextlib.contextmanager
def reader_of(*models: str) -> Iterator[None]:
    access = Access(model_roles=MappingProxyType(dict.fromkeys(models, Role.VIEWER)))
    token = bind_call(CallInfo("/test", "r", Principal("eve"), access=access))
    try:
        yield
    finally:
        unbind_call(token)


# The servicers under test read nothing from their gRPC context.
NO_CONTEXT: Any = None


@pytest.fixture
async def log(start_server, open_channel) -> tuple[Any, EventServicer]:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    component = server.components[0]
    assert isinstance(component, EventsComponent)
    stub = event_service_pb2_grpc.EventServiceStub(open_channel(server.address))
    return stub, EventServicer(component.events, component._tokens)


VISIBLE = ["models/fraud", "models/fraud/versions/1", "models/fraud/versions/1/files/x"]
HIDDEN = [
    "models/fraudster/versions/1",  # a prefix of a readable id is another model
    "models/churn",
    "experiments/fraud",
    "registry",
    "models",
]


async def publish_mix(stub: Any) -> dict[str, str]:
    """One event per subject, visible and hidden interleaved; subject -> event id."""
    subjects = [s for pair in zip(VISIBLE + [""] * 2, HIDDEN, strict=True) for s in pair if s]
    events = [ev(s) for s in subjects]
    await stub.PublishEvents(event_service_pb2.PublishEventsRequest(source="x", events=events))
    return {e.subject: e.id for e in events}


async def test_list_and_pages_show_only_readable_models(log) -> None:
    stub, servicer = log
    ids = await publish_mix(stub)
    with reader_of("fraud"):
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            reply = await servicer.ListEvents(
                event_service_pb2.ListEventsRequest(page_size=1, page_token=token), NO_CONTEXT
            )
            seen.extend(e.subject for e in reply.events)
            pages += 1
            token = reply.next_page_token
            if not token:
                break
        # No empty page and no page past the last visible event: tokens reveal nothing.
        assert seen == VISIBLE
        assert pages == len(VISIBLE)
        filtered = await servicer.ListEvents(
            event_service_pb2.ListEventsRequest(filter='subject = "models/*"'), NO_CONTEXT
        )
        assert [e.subject for e in filtered.events] == VISIBLE
    with reader_of():
        nothing = await servicer.ListEvents(event_service_pb2.ListEventsRequest(), NO_CONTEXT)
        assert list(nothing.events) == []
    # A registry-wide reader (no bound access: the system) sees everything.
    everything = await servicer.ListEvents(event_service_pb2.ListEventsRequest(), NO_CONTEXT)
    assert len(everything.events) == len(ids)


async def test_get_of_a_hidden_event_is_not_found(log) -> None:
    stub, servicer = log
    ids = await publish_mix(stub)
    with reader_of("fraud"):
        got = await servicer.GetEvent(
            event_service_pb2.GetEventRequest(name=f"events/{ids['models/fraud/versions/1']}"),
            NO_CONTEXT,
        )
        assert got.event.subject == "models/fraud/versions/1"
        for subject in HIDDEN:
            with pytest.raises(NotFound):
                await servicer.GetEvent(
                    event_service_pb2.GetEventRequest(name=f"events/{ids[subject]}"), NO_CONTEXT
                )


async def test_subscribe_catch_up_and_live_show_only_readable_models(log) -> None:
    stub, servicer = log
    await publish_mix(stub)
    got: list[str] = []
    arrived = asyncio.Event()

    async def consume() -> None:
        with reader_of("fraud"):
            stream = servicer.Subscribe(event_service_pb2.SubscribeRequest(), NO_CONTEXT)
            async for reply in stream:
                got.append(reply.event.subject)
                if len(got) == len(VISIBLE) + 2:
                    arrived.set()

    task = asyncio.create_task(consume())
    try:
        live = [ev("models/churn/versions/9"), ev("models/fraud/versions/2"), ev("experiments/x")]
        live.append(ev("models/fraud/versions/3"))
        await stub.PublishEvents(event_service_pb2.PublishEventsRequest(source="x", events=live))
        async with asyncio.timeout(10):
            await arrived.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert got == [*VISIBLE, "models/fraud/versions/2", "models/fraud/versions/3"]


async def test_list_deliveries_shows_only_readable_models(start_server, open_channel) -> None:
    receiver = await Receiver().start()
    try:
        server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
        channel = open_channel(server.address)
        hooks = webhook_service_pb2_grpc.WebhookServiceStub(channel)
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        created = await hooks.CreateWebhook(
            webhook_service_pb2.CreateWebhookRequest(webhook=webhook_pb2.Webhook(url=receiver.url))
        )
        await publish_mix(stub)
        component = server.components[0]
        assert isinstance(component, EventsComponent)
        servicer = WebhookServicer(component.webhooks, component._tokens)
        request = webhook_service_pb2.ListDeliveriesRequest(parent=created.webhook.name)
        everything = await servicer.ListDeliveries(request, NO_CONTEXT)
        assert len(everything.deliveries) == len(VISIBLE) + len(HIDDEN)
        subjects = {
            e.id: e.subject
            for e in (await stub.ListEvents(event_service_pb2.ListEventsRequest())).events
        }
        with reader_of("fraud"):
            narrowed = await servicer.ListDeliveries(request, NO_CONTEXT)
        assert sorted(subjects[d.event.split("/")[1]] for d in narrowed.deliveries) == sorted(
            VISIBLE
        )
    finally:
        await receiver.stop()
