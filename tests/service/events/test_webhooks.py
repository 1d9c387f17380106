"""Webhooks over a real channel and a real loopback receiver: validation and the SSRF guard,
signed deliveries, retries honouring Retry-After, dead-letter, redelivery, rotation."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from grpc import aio

from modelreg.events.v1 import (
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    webhook_pb2,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from modelreg.events.webhooks import WebhookVerificationError, verify_signature
from modelreg_events.app import spec_with
from modelreg_events.settings import EventsSettings
from modelreg_events.store.events import _APPEND_LOCK
from service.events.kit import Receiver
from testkit import error_details, make_settings

FAST = {
    "allow_private_targets": True,
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 0.2,
    "max_attempts": 4,
    "delivery_timeout_seconds": 2,
    "poll_interval_seconds": 0.2,
}


class Api:
    def __init__(self, channel: aio.Channel) -> None:
        self.events = event_service_pb2_grpc.EventServiceStub(channel)
        self.hooks = webhook_service_pb2_grpc.WebhookServiceStub(channel)

    async def create(self, url: str, **fields: Any) -> webhook_service_pb2.CreateWebhookResponse:
        return await self.hooks.CreateWebhook(
            webhook_service_pb2.CreateWebhookRequest(webhook=webhook_pb2.Webhook(url=url, **fields))
        )

    async def publish(self, subject: str, type_: str = "model_version.created") -> event_pb2.Event:
        e = event_pb2.Event(id=str(uuid.uuid4()), type=type_, subject=subject, actor="alice")
        e.data.update({"subject": subject})
        await self.events.PublishEvents(
            event_service_pb2.PublishEventsRequest(source="metadata", events=[e])
        )
        return e

    async def deliveries(self, name: str) -> list[webhook_pb2.Delivery]:
        reply = await self.hooks.ListDeliveries(
            webhook_service_pb2.ListDeliveriesRequest(parent=name)
        )
        return list(reply.deliveries)


async def settled(api: Api, name: str, state: int, count: int = 1) -> list[webhook_pb2.Delivery]:
    """The webhook's deliveries once `count` of them are in `state`. The worker records an
    attempt just after the receiver answers, so this polls the delivery log briefly."""
    async with asyncio.timeout(10):
        while True:
            deliveries = await api.deliveries(name)
            if sum(d.state == state for d in deliveries) >= count:
                return deliveries
            await asyncio.sleep(0.02)


_OPEN: list[aio.Channel] = []


@pytest.fixture(autouse=True)
async def _close_channels():
    yield
    while _OPEN:
        await _OPEN.pop().close()


async def api_for(start_server, **settings: Any) -> Api:
    spec = spec_with(EventsSettings(**{**FAST, **settings}))
    server = await start_server([spec], settings=make_settings(relay_enabled=False))
    channel = aio.insecure_channel(server.address)
    _OPEN.append(channel)
    return Api(channel)


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_delivery_is_signed_and_verifies(start_server, receiver: Receiver) -> None:
    api = await api_for(start_server)
    created = await api.create(
        receiver.url, event_types=["model_version.created"], models=["models/fraud"]
    )
    assert created.secret.startswith("whsec_")
    assert created.webhook.state == webhook_pb2.WEBHOOK_STATE_ACTIVE
    await api.publish("models/other/versions/1")
    await api.publish("models/fraud/versions/1", "model_version.alias_set")
    event = await api.publish("models/fraud/versions/2")
    await receiver.wait_for(lambda got: len(got) >= 1)
    got = receiver.received[0]
    verify_signature(created.secret, got.headers, got.body)
    assert got.headers["webhook-id"] == event.id
    assert got.json["subject"] == "models/fraud/versions/2"
    assert got.json["data"] == {"subject": "models/fraud/versions/2"}
    with pytest.raises(WebhookVerificationError):
        verify_signature(created.secret, got.headers, got.body + b" ")
    [delivery] = await settled(api, created.webhook.name, webhook_pb2.DELIVERY_STATE_SUCCEEDED)
    assert delivery.event == f"events/{event.id}"
    assert delivery.last_status_code == 204
    assert len(receiver.received) == 1  # the filtered-out events were not sent


async def test_whole_numbers_reach_the_receiver_as_json_integers(
    start_server, receiver: Receiver
) -> None:
    # Event data travels as a protobuf Struct (every number a double); a receiver decoding
    # `version` into an integer (Go's encoding/json refuses 3.0) must get 3.
    api = await api_for(start_server)
    await api.create(receiver.url)
    e = event_pb2.Event(
        id=str(uuid.uuid4()), type="model_version.created", subject="models/m/versions/3"
    )
    e.data.update(
        {"version": 3, "accuracy": 0.5, "negative": -2, "nested": {"n": 7}, "list": [1, 2.5]}
    )
    await api.events.PublishEvents(
        event_service_pb2.PublishEventsRequest(source="metadata", events=[e])
    )
    await receiver.wait_for(lambda got: len(got) >= 1)
    body = receiver.received[0].body
    assert b'"version":3}' in body
    data = receiver.received[0].json["data"]
    assert data == {
        "version": 3,
        "accuracy": 0.5,
        "negative": -2,
        "nested": {"n": 7},
        "list": [1, 2.5],
    }
    assert [type(data[k]) for k in ("version", "accuracy", "negative")] == [int, float, int]
    assert type(data["nested"]["n"]) is int
    assert [type(v) for v in data["list"]] == [int, float]


async def test_receiver_failing_three_times_then_succeeding_gets_the_event(
    start_server, receiver: Receiver
) -> None:
    receiver.script = lambda n: (503, {"Retry-After": "0"}) if n < 3 else (200, {})
    api = await api_for(start_server)
    created = await api.create(receiver.url)
    await api.publish("models/a/versions/1")
    await receiver.wait_for(lambda got: len(got) >= 4)
    [delivery] = await settled(api, created.webhook.name, webhook_pb2.DELIVERY_STATE_SUCCEEDED)
    assert [a.status_code for a in delivery.attempts] == [503, 503, 503, 200]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


async def test_dead_receiver_ends_in_dead_letter_with_the_reason_and_can_be_redelivered(
    start_server, receiver: Receiver
) -> None:
    receiver.script = lambda n: (500, {})
    api = await api_for(start_server)
    created = await api.create(receiver.url)
    event = await api.publish("models/a/versions/1")
    await receiver.wait_for(lambda got: len(got) >= 4)
    [delivery] = await settled(api, created.webhook.name, webhook_pb2.DELIVERY_STATE_DEAD_LETTER)
    assert delivery.attempt_count == 4
    assert delivery.last_error == "HTTP 500"
    dead = await api.hooks.ListDeliveries(
        webhook_service_pb2.ListDeliveriesRequest(
            parent=created.webhook.name, filter='state = "DEAD_LETTER"'
        )
    )
    assert len(dead.deliveries) == 1
    receiver.script = lambda n: (200, {})
    again = await api.hooks.RedeliverEvent(
        webhook_service_pb2.RedeliverEventRequest(
            webhook=created.webhook.name, event=f"events/{event.id}"
        )
    )
    assert again.delivery.state == webhook_pb2.DELIVERY_STATE_PENDING
    await receiver.wait_for(lambda got: len(got) >= 5)
    [delivery] = await settled(api, created.webhook.name, webhook_pb2.DELIVERY_STATE_SUCCEEDED)
    assert [a.status_code for a in delivery.attempts] == [500, 500, 500, 500, 200]


async def test_unreachable_receiver_logs_the_connection_error(start_server) -> None:
    api = await api_for(start_server, max_attempts=1)
    created = await api.create("http://127.0.0.1:1/hook")
    await api.publish("models/a/versions/1")
    deliveries = await settled(api, created.webhook.name, webhook_pb2.DELIVERY_STATE_DEAD_LETTER)
    assert "connection failed" in deliveries[0].last_error


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http or https"),
        ("not a url", "http or https"),
        ("http://", "host"),
        ("http://127.0.0.1:8080/x", "loopback"),
        ("http://localhost/x", "loopback"),
        ("http://10.0.0.7/x", "private"),
        ("http://192.168.1.1/x", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[::1]/x", "loopback"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://user:pw@example.com/x", "credentials"),
        ("http://metadata.google.internal/x", "metadata"),
    ],
)
async def test_bad_and_ssrf_targets_are_refused(start_server, url: str, why: str) -> None:
    api = await api_for(start_server, allow_private_targets=False)
    with pytest.raises(aio.AioRpcError) as err:
        await api.create(url)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, _, violations = error_details(err.value)
    assert reason == "INVALID_FIELD"
    assert violations[0][0] == "webhook.url"
    assert why in violations[0][1]


async def test_name_resolving_to_loopback_is_refused_at_delivery(start_server, receiver) -> None:
    api = await api_for(start_server, allow_private_targets=False, max_attempts=1)
    port = receiver.url.split(":")[2].split("/")[0]
    # A DNS name passes creation; it resolves to a non-public address when delivering, and
    # is refused then. This host's own name resolves locally (/etc/hosts) without a network.
    host = socket.gethostname()
    try:
        address = socket.gethostbyname(host)
    except OSError:
        pytest.skip("this host's name does not resolve")
    if ipaddress.ip_address(address).is_global:
        pytest.skip("this host's name resolves to a public address")
    created = await api.create(f"http://{host}:{port}/hook")
    tested = await api.hooks.TestWebhook(
        webhook_service_pb2.TestWebhookRequest(name=created.webhook.name)
    )
    assert not tested.success
    assert "refused" in tested.error
    assert receiver.received == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event_types": ["model_version.exploded"]}, "webhook.event_types[0]"),
        ({"models": ["fraud"]}, "webhook.models[0]"),
        ({"description": "x" * 2000}, "webhook.description"),
    ],
)
async def test_bad_webhook_fields(start_server, fields, field: str) -> None:
    api = await api_for(start_server)
    with pytest.raises(aio.AioRpcError) as err:
        await api.create("http://127.0.0.1:9/x", **fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == field


async def test_crud_etag_rotation_and_test(start_server, receiver: Receiver) -> None:
    api = await api_for(start_server)
    created = await api.create(receiver.url, description="ci")
    name = created.webhook.name
    got = await api.hooks.GetWebhook(webhook_service_pb2.GetWebhookRequest(name=name))
    assert got.webhook.etag == created.webhook.etag
    updated = await api.hooks.UpdateWebhook(
        webhook_service_pb2.UpdateWebhookRequest(
            webhook=webhook_pb2.Webhook(
                name=name, state=webhook_pb2.WEBHOOK_STATE_DISABLED, etag=created.webhook.etag
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["state"]),
        )
    )
    assert updated.webhook.state == webhook_pb2.WEBHOOK_STATE_DISABLED
    assert updated.webhook.description == "ci"
    with pytest.raises(aio.AioRpcError) as err:
        await api.hooks.UpdateWebhook(
            webhook_service_pb2.UpdateWebhookRequest(
                webhook=webhook_pb2.Webhook(name=name, etag=created.webhook.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        )
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert error_details(err.value)[0] == "ETAG_MISMATCH"
    with pytest.raises(aio.AioRpcError) as err:
        await api.hooks.UpdateWebhook(
            webhook_service_pb2.UpdateWebhookRequest(
                webhook=webhook_pb2.Webhook(name=name),
                update_mask=field_mask_pb2.FieldMask(paths=["secret"]),
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == "update_mask"
    # A disabled webhook gets no new deliveries.
    await api.publish("models/a/versions/1")
    # Rotation: both secrets sign during the overlap.
    rotated = await api.hooks.RotateWebhookSecret(
        webhook_service_pb2.RotateWebhookSecretRequest(
            name=name, overlap=duration_pb2.Duration(seconds=60)
        )
    )
    assert rotated.secret != created.secret
    assert rotated.webhook.HasField("previous_secret_expire_time")
    tested = await api.hooks.TestWebhook(webhook_service_pb2.TestWebhookRequest(name=name))
    assert tested.success
    assert tested.status_code == 204
    [got_test] = receiver.received
    assert json.loads(got_test.body)["type"] == "webhook.test"
    assert len(got_test.headers["webhook-signature"].split()) == 2
    verify_signature(created.secret, got_test.headers, got_test.body)
    verify_signature(rotated.secret, got_test.headers, got_test.body)
    assert await api.deliveries(name) == []
    listed = await api.hooks.ListWebhooks(webhook_service_pb2.ListWebhooksRequest(page_size=1))
    assert [w.name for w in listed.webhooks] == [name]
    await api.hooks.DeleteWebhook(webhook_service_pb2.DeleteWebhookRequest(name=name))
    with pytest.raises(aio.AioRpcError) as err:
        await api.hooks.GetWebhook(webhook_service_pb2.GetWebhookRequest(name=name))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(err.value)[0] == "RESOURCE_NOT_FOUND"
    with pytest.raises(aio.AioRpcError) as err:
        await api.hooks.GetWebhook(webhook_service_pb2.GetWebhookRequest(name="hooks/x"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == "name"


async def test_create_with_request_id_replays_the_first_response(start_server) -> None:
    api = await api_for(start_server)
    request = webhook_service_pb2.CreateWebhookRequest(
        webhook=webhook_pb2.Webhook(url="http://127.0.0.1:9/x"), request_id=str(uuid.uuid4())
    )
    first = await api.hooks.CreateWebhook(request)
    again = await api.hooks.CreateWebhook(request)
    assert again == first
    listed = await api.hooks.ListWebhooks(webhook_service_pb2.ListWebhooksRequest())
    assert len(listed.webhooks) == 1
    request.webhook.description = "something else"
    with pytest.raises(aio.AioRpcError) as err:
        await api.hooks.CreateWebhook(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == "request_id"


async def test_an_append_waiting_for_the_log_skips_a_webhook_deleted_meanwhile(
    start_server, receiver: Receiver
) -> None:
    # An append's snapshot is taken before it waits for the log's lock; a webhook deleted
    # during the wait must neither fail the append (foreign key) nor get a delivery.
    server = await start_server(
        [spec_with(EventsSettings.model_validate(FAST))],
        settings=make_settings(relay_enabled=False),
    )
    channel = aio.insecure_channel(server.address)
    _OPEN.append(channel)
    api = Api(channel)
    kept = await api.create(receiver.url)
    gone = await api.create(receiver.url)
    pool = server._pools[0]
    async with pool.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock($1)", _APPEND_LOCK)
        publishing = asyncio.create_task(api.publish("models/a/versions/1"))
        async with asyncio.timeout(10):
            while True:
                waiting = await pool.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                if waiting:
                    break
                await asyncio.sleep(0.02)
        await api.hooks.DeleteWebhook(
            webhook_service_pb2.DeleteWebhookRequest(name=gone.webhook.name)
        )
        await holder.execute("SELECT pg_advisory_unlock($1)", _APPEND_LOCK)
    event = await publishing
    [delivery] = await settled(api, kept.webhook.name, webhook_pb2.DELIVERY_STATE_SUCCEEDED)
    assert delivery.event == f"events/{event.id}"
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 1
