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
from grpc import aio

from modelreg.events.v1 import (
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    usage_service_pb2,
    usage_service_pb2_grpc,
    webhook_pb2,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from modelreg.metadata.v1 import access_pb2 as ac
from modelreg.metadata.v1 import access_service_pb2 as acs
from modelreg.metadata.v1 import access_service_pb2_grpc as acs_grpc
from modelreg.metadata.v1 import registered_model_pb2 as rm
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import registered_model_service_pb2_grpc as rms_grpc
from modelreg_common.access import Access, Role
from modelreg_common.auth import hash_token
from modelreg_common.context import CallInfo, Principal, bind_call, unbind_call
from modelreg_common.errors import NotFound, PermissionDenied
from modelreg_common.settings import AuthSettings, TokenEntry
from modelreg_events.app import EventsComponent, spec_with
from modelreg_events.settings import EventsSettings
from modelreg_events.transport.servicers import EventServicer, WebhookServicer
from modelreg_metadata.app import SPEC as METADATA_SPEC
from service.events.kit import PRODUCER_SPEC, Receiver, emit, producer_relay
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
    relay = producer_relay(server, channel)
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
class _Context:
    """What the servicers use of a call's context when called directly: response headers."""

    async def send_initial_metadata(self, metadata: Any) -> None:
        return None


NO_CONTEXT: Any = _Context()


@pytest.fixture
async def log(start_server, open_channel) -> tuple[Any, EventServicer]:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    component = server.components[0]
    assert isinstance(component, EventsComponent)
    stub = event_service_pb2_grpc.EventServiceStub(open_channel(server.address))
    return stub, EventServicer(component.events, component._tokens, component._authorizer)


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


async def test_deliveries_of_a_registry_wide_webhook_are_for_registry_readers(
    start_server, open_channel
) -> None:
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
        assert sorted(subjects[d.event.split("/")[1]] for d in everything.deliveries) == sorted(
            VISIBLE + HIDDEN
        )
        # A webhook with no models sees every model's events: a reader of one model may not
        # look at its deliveries at all (webhooks limited to models are their readers').
        with reader_of("fraud"), pytest.raises(PermissionDenied):
            await servicer.ListDeliveries(request, NO_CONTEXT)
    finally:
        await receiver.stop()


# -- the same over the wire, through the runtime's authorizer in token mode -----------------

ROOT_TOKEN = "root-token-" + "r" * 20
ALICE_TOKEN = "alice-token-" + "a" * 20


class _Bearer(aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", f"Bearer {self._token}")
        return aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


async def token_server(start_server: Any) -> Any:
    """Events and metadata in token mode: root is an admin by configuration, alice has no
    role until granted one."""
    auth = AuthSettings(
        mode="token",
        tokens=[
            TokenEntry(sha256=hash_token(ROOT_TOKEN), principal="root"),
            TokenEntry(sha256=hash_token(ALICE_TOKEN), principal="alice"),
        ],
        admins=["user:root"],
    )
    return await start_server(
        [SPEC, METADATA_SPEC], settings=make_settings(auth=auth, relay_enabled=False)
    )


async def test_a_reader_of_one_model_sees_only_its_events_over_the_wire(start_server) -> None:
    server = await token_server(start_server)
    async with (
        aio.insecure_channel(server.address, interceptors=[_Bearer(ROOT_TOKEN)]) as root,
        aio.insecure_channel(server.address, interceptors=[_Bearer(ALICE_TOKEN)]) as alice,
    ):
        root_events = event_service_pb2_grpc.EventServiceStub(root)
        alice_events = event_service_pb2_grpc.EventServiceStub(alice)
        await rms_grpc.RegisteredModelServiceStub(root).CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(
                registered_model_id="fraud", registered_model=rm.RegisteredModel()
            )
        )
        await acs_grpc.AccessServiceStub(root).SetIamPolicy(
            acs.SetIamPolicyRequest(
                resource="models/fraud",
                policy=ac.IamPolicy(
                    bindings=[ac.Binding(role=ac.ROLE_VIEWER, members=["user:alice"])]
                ),
            )
        )
        ids = await publish_mix(root_events)

        pages: list[list[str]] = []
        token = ""
        while True:
            reply = await alice_events.ListEvents(
                event_service_pb2.ListEventsRequest(page_size=2, page_token=token)
            )
            pages.append([e.subject for e in reply.events])
            token = reply.next_page_token
            if not token:
                break
        assert [s for page in pages for s in page] == VISIBLE
        assert all(pages)
        for subject in HIDDEN:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await alice_events.GetEvent(
                    event_service_pb2.GetEventRequest(name=f"events/{ids[subject]}")
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # A channel takes one interceptor per call kind: the stream names its caller itself.
        stream = alice_events.Subscribe(
            event_service_pb2.SubscribeRequest(),
            metadata=(("authorization", f"Bearer {ALICE_TOKEN}"),),
        )
        seen: list[str] = []
        async with asyncio.timeout(10):
            async for message in stream:
                seen.append(message.event.subject)
                if len(seen) == len(VISIBLE):
                    break
        stream.cancel()
        assert seen == VISIBLE
        everything = await root_events.ListEvents(event_service_pb2.ListEventsRequest())
        assert len(everything.events) == len(ids)

        # Usage follows the same grants: alice reads fraud's, not churn's, and records none.
        usage = usage_service_pb2_grpc.UsageServiceStub(alice)
        await usage.ListUsage(usage_service_pb2.ListUsageRequest(parent="models/fraud"))
        for call in (
            usage.ListUsage(usage_service_pb2.ListUsageRequest(parent="models/churn")),
            usage.RecordUsage(usage_service_pb2.RecordUsageRequest(batch_id="b")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_open_subscription_follows_grant_changes(start_server) -> None:
    server = await token_server(start_server)
    async with (
        aio.insecure_channel(server.address, interceptors=[_Bearer(ROOT_TOKEN)]) as root,
        aio.insecure_channel(server.address) as alice,
    ):
        root_events = event_service_pb2_grpc.EventServiceStub(root)
        access = acs_grpc.AccessServiceStub(root)
        for model in ("fraud", "churn"):
            await rms_grpc.RegisteredModelServiceStub(root).CreateRegisteredModel(
                rms.CreateRegisteredModelRequest(
                    registered_model_id=model, registered_model=rm.RegisteredModel()
                )
            )

        async def set_viewer(model: str, members: list[str]) -> None:
            policy = await access.GetIamPolicy(acs.GetIamPolicyRequest(resource=f"models/{model}"))
            await access.SetIamPolicy(
                acs.SetIamPolicyRequest(
                    resource=f"models/{model}",
                    policy=ac.IamPolicy(
                        bindings=[ac.Binding(role=ac.ROLE_VIEWER, members=members)]
                        if members
                        else [],
                        etag=policy.policy.etag,
                    ),
                )
            )

        await set_viewer("fraud", ["user:alice"])
        await set_viewer("churn", ["user:alice"])
        stream = event_service_pb2_grpc.EventServiceStub(alice).Subscribe(
            event_service_pb2.SubscribeRequest(from_now=True, filter='actor = "bob"'),
            metadata=(("authorization", f"Bearer {ALICE_TOKEN}"),),
        )
        await stream.initial_metadata()

        async def next_subject() -> str:
            async with asyncio.timeout(10):
                message = await stream.read()
            assert isinstance(message, event_service_pb2.SubscribeResponse)
            return message.event.subject

        async def publish(subject: str) -> None:
            await root_events.PublishEvents(
                event_service_pb2.PublishEventsRequest(source="test", events=[ev(subject)])
            )

        await publish("models/fraud/versions/1")
        await publish("models/churn/versions/1")
        assert [await next_subject(), await next_subject()] == [
            "models/fraud/versions/1",
            "models/churn/versions/1",
        ]
        # Revoked on churn: the open stream stops showing churn, goes on with fraud.
        await set_viewer("churn", ["user:someone-else"])
        await publish("models/churn/versions/2")
        await publish("models/fraud/versions/2")
        assert await next_subject() == "models/fraud/versions/2"
        # Revoked on fraud too: nothing left to read, and the stream says so.
        await set_viewer("fraud", [])
        await publish("models/fraud/versions/3")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await next_subject()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "no longer read" in (err.value.details() or "")
