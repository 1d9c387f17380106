"""Webhook signing secrets are sealed at rest: the database (webhooks and saved idempotent
responses) never holds one in clear, deliveries still verify, rotation signs with both,
rows from before sealing are sealed at start-up, and a missing encryption key fails the
affected webhooks clearly without stopping the others."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2
from grpc import aio
from pydantic import SecretStr
from structlog.testing import capture_logs

from modelreg.events.v1 import webhook_pb2, webhook_service_pb2
from modelreg.events.webhooks import verify_signature
from modelreg_common.idempotency import request_hash
from modelreg_common.migrations import migrate_dsn
from modelreg_common.server import RegistryServer
from modelreg_events.app import spec_with
from modelreg_events.domain.secret_box import SecretKey, key_id
from modelreg_events.settings import EventsSettings
from service.events.kit import Receiver
from service.events.test_webhooks import FAST, Api, settled
from testkit import error_details, make_settings

K1 = SecretKey("k1", b"\x01" * 32)
K2 = SecretKey("k2", b"\x02" * 32)


def settings_with(*keys: SecretKey, **extra: Any) -> EventsSettings:
    return EventsSettings.model_validate(
        {**FAST, **extra, "secret_keys": SecretStr(",".join(k.line() for k in keys))}
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "events"})
    yield conn
    await conn.close()


async def open_api(server: RegistryServer, channels: list[aio.Channel]) -> Api:
    channel = aio.insecure_channel(server.address)
    channels.append(channel)
    return Api(channel)


@pytest.fixture
async def channels() -> AsyncIterator[list[aio.Channel]]:
    opened: list[aio.Channel] = []
    yield opened
    for channel in opened:
        await channel.close()


def assert_no_clear_secret(rows: list[asyncpg.Record], *secrets: str) -> None:
    """No column of `rows`, as text or as bytes, holds a secret, its base64 key or the key."""
    needles: list[bytes] = []
    for secret in secrets:
        b64 = secret.removeprefix("whsec_")
        raw = base64.b64decode(b64)
        needles += [secret.encode(), b64.encode(), raw, raw.hex().encode()]
    assert rows
    for row in rows:
        for column, value in row.items():
            if value is None:
                continue
            data = bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None
            text = str(value).encode()
            for needle in needles:
                assert needle not in text, column
                assert data is None or needle not in data, column


async def stored(db: asyncpg.Connection[Any], webhook_id: str) -> list[asyncpg.Record]:
    rows = await db.fetch("SELECT w.*, w::text AS whole FROM webhooks w WHERE id = $1", webhook_id)
    return list(rows)


async def saved_responses(db: asyncpg.Connection[Any]) -> list[asyncpg.Record]:
    return list(
        await db.fetch("SELECT k.*, k::text AS whole FROM idempotency_keys k ORDER BY request_id")
    )


async def test_created_secret_is_not_stored_in_clear_and_deliveries_verify(
    start_server, receiver: Receiver, db: asyncpg.Connection[Any], channels: list[aio.Channel]
) -> None:
    server = await start_server(
        [spec_with(settings_with(K1))], settings=make_settings(relay_enabled=False)
    )
    api = await open_api(server, channels)
    request = webhook_service_pb2.CreateWebhookRequest(
        webhook=webhook_pb2.Webhook(url=receiver.url), webhook_id="sealed", request_id="r-1"
    )
    created = await api.hooks.CreateWebhook(request)
    replayed = await api.hooks.CreateWebhook(request)
    assert replayed.secret == created.secret
    assert replayed.webhook.name == created.webhook.name == "webhooks/sealed"

    [row] = await stored(db, "sealed")
    assert row["secret"] is None
    assert row["previous_secret"] is None
    assert key_id(bytes(row["secret_box"])) == "k1"
    assert_no_clear_secret([row], created.secret)
    [saved] = await saved_responses(db)
    assert saved["method"] == "CreateWebhook"
    assert key_id(bytes(saved["response"])) == "k1"
    assert_no_clear_secret([saved], created.secret)

    event = await api.publish("models/a/versions/1")
    await receiver.wait_for(lambda got: len(got) >= 1)
    verify_signature(created.secret, receiver.received[0].headers, receiver.received[0].body)
    assert receiver.received[0].headers["webhook-id"] == event.id
    await settled(api, created.webhook.name, webhook_pb2.DELIVERY_STATE_SUCCEEDED)


async def test_rotation_signs_with_both_secrets_and_stores_neither(
    start_server, receiver: Receiver, db: asyncpg.Connection[Any], channels: list[aio.Channel]
) -> None:
    # k2 seals from now on; k1 (the webhook's first secret) still opens.
    first = await start_server(
        [spec_with(settings_with(K1))], settings=make_settings(relay_enabled=False)
    )
    api = await open_api(first, channels)
    created = await api.create(receiver.url)
    webhook_id = created.webhook.name.removeprefix("webhooks/")
    await first.stop(0)

    server = await start_server(
        [spec_with(settings_with(K2, K1))], settings=make_settings(relay_enabled=False)
    )
    api = await open_api(server, channels)
    rotated = await api.hooks.RotateWebhookSecret(
        webhook_service_pb2.RotateWebhookSecretRequest(
            name=created.webhook.name, overlap=duration_pb2.Duration(seconds=60)
        )
    )
    assert rotated.secret != created.secret
    [row] = await stored(db, webhook_id)
    assert_no_clear_secret([row], created.secret, rotated.secret)
    # Rotating re-sealed both under the first key of the ring.
    assert key_id(bytes(row["secret_box"])) == "k2"
    assert key_id(bytes(row["previous_secret_box"])) == "k2"

    await api.publish("models/a/versions/1")
    await receiver.wait_for(lambda got: len(got) >= 1)
    got = receiver.received[0]
    assert len(got.headers["webhook-signature"].split()) == 2
    verify_signature(created.secret, got.headers, got.body)
    verify_signature(rotated.secret, got.headers, got.body)


async def test_clear_secrets_from_before_sealing_are_sealed_at_start_and_still_deliver(
    empty_dsn: str, receiver: Receiver, channels: list[aio.Channel]
) -> None:
    spec = spec_with(settings_with(K1))
    # The database as the release before sealing left it: migrations up to 0005.
    await migrate_dsn(empty_dsn, spec.schema, spec.migrations()[:5])
    old_secret = "whsec_" + base64.b64encode(b"\x07" * 32).decode()
    previous = "whsec_" + base64.b64encode(b"\x08" * 32).decode()
    request = webhook_service_pb2.CreateWebhookRequest(
        webhook=webhook_pb2.Webhook(url=receiver.url), webhook_id="legacy", request_id="r-old"
    )
    response = webhook_service_pb2.CreateWebhookResponse(
        webhook=webhook_pb2.Webhook(name="webhooks/legacy", url=receiver.url), secret=old_secret
    )
    conn = await asyncpg.connect(empty_dsn, server_settings={"search_path": "events"})
    try:
        await conn.execute(
            "INSERT INTO webhooks (id, url, state, secret, previous_secret,"
            " previous_secret_expires_at) VALUES ('legacy', $1, 'ACTIVE', $2, $3,"
            " now() + interval '1 hour')",
            receiver.url,
            old_secret,
            previous,
        )
        await conn.execute(
            "INSERT INTO idempotency_keys (request_id, method, request_hash, response)"
            " VALUES ('r-old', 'CreateWebhook', $1, $2)",
            request_hash(request.SerializeToString(deterministic=True)),
            response.SerializeToString(),
        )

        server = RegistryServer(make_settings(relay_enabled=False), [spec], empty_dsn)
        await server.start()
        try:
            rows = await conn.fetch("SELECT w.*, w::text AS whole FROM webhooks w")
            assert [r["id"] for r in rows] == ["legacy"]
            assert rows[0]["secret"] is None
            assert rows[0]["previous_secret"] is None
            assert_no_clear_secret(list(rows), old_secret, previous)
            saved = await conn.fetch("SELECT k.*, k::text AS whole FROM idempotency_keys k")
            assert_no_clear_secret(list(saved), old_secret)

            api = await open_api(server, channels)
            # The saved response still answers a retry, secret included.
            replayed = await api.hooks.CreateWebhook(request)
            assert replayed.secret == old_secret
            await api.publish("models/a/versions/1")
            await receiver.wait_for(lambda got: len(got) >= 1)
            got = receiver.received[0]
            verify_signature(old_secret, got.headers, got.body)
            verify_signature(previous, got.headers, got.body)
        finally:
            await server.stop(0)

        # Sealing is idempotent: a second start finds nothing to do and changes nothing.
        before = await conn.fetch("SELECT secret_box, previous_secret_box FROM webhooks")
        again = RegistryServer(make_settings(relay_enabled=False), [spec], empty_dsn)
        await again.start()
        await again.stop(0)
        assert await conn.fetch("SELECT secret_box, previous_secret_box FROM webhooks") == before
    finally:
        await conn.close()


async def test_unknown_key_id_fails_that_webhook_clearly_and_others_still_deliver(
    start_server, receiver: Receiver, channels: list[aio.Channel]
) -> None:
    first = await start_server(
        [spec_with(settings_with(K1))], settings=make_settings(relay_enabled=False)
    )
    api = await open_api(first, channels)
    orphan = await api.create(receiver.url, models=["models/a"])
    await first.stop(0)

    with capture_logs() as logs:
        server = await start_server(
            [spec_with(settings_with(K2))], settings=make_settings(relay_enabled=False)
        )
        api = await open_api(server, channels)
        # Creating webhooks still works.
        fresh = await api.create(receiver.url, models=["models/a"])
        await api.publish("models/a/versions/1")
        [failed] = await settled(api, orphan.webhook.name, webhook_pb2.DELIVERY_STATE_DEAD_LETTER)
        await settled(api, fresh.webhook.name, webhook_pb2.DELIVERY_STATE_SUCCEEDED)

        for name, call in (
            (
                "rotate",
                api.hooks.RotateWebhookSecret(
                    webhook_service_pb2.RotateWebhookSecretRequest(name=orphan.webhook.name)
                ),
            ),
            (
                "test",
                api.hooks.TestWebhook(
                    webhook_service_pb2.TestWebhookRequest(name=orphan.webhook.name)
                ),
            ),
        ):
            with pytest.raises(aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, name
            reason, metadata, _ = error_details(err.value)
            assert reason == "INVALID_STATE_TRANSITION"
            assert metadata["key_id"] == "k1"
            assert "'k1'" in (err.value.details() or "")

    # Only the webhook with a key got the event, signed with its own secret.
    assert len(receiver.received) == 1
    verify_signature(fresh.secret, receiver.received[0].headers, receiver.received[0].body)
    assert failed.attempts
    assert all("'k1'" in a.error and a.status_code == 0 for a in failed.attempts)
    assert "'k1'" in failed.last_error

    assert any(
        e["event"] == "webhooks.secret_keys_missing" and e["key_ids"] == ["k1"] for e in logs
    )
    unavailable = [e for e in logs if e["event"] == "webhook.secret_unavailable"]
    assert unavailable
    assert all(e["key_id"] == "k1" for e in unavailable)
    assert not [e for e in logs if e.get("log_level") == "critical" or e["event"] == "delivery.bug"]
    dumped = repr(logs)
    for secret in (orphan.secret, fresh.secret):
        assert secret not in dumped
        assert secret.removeprefix("whsec_") not in dumped


async def test_generated_key_under_home_is_used_when_none_is_configured(
    start_server, tmp_path, receiver: Receiver, channels: list[aio.Channel]
) -> None:
    home = tmp_path / "home"
    settings = make_settings(relay_enabled=False, home=home)
    server = await start_server([spec_with(EventsSettings.model_validate(FAST))], settings=settings)
    api = await open_api(server, channels)
    created = await api.create(receiver.url)
    assert (home / "webhook-secret-keys").stat().st_mode & 0o077 == 0
    await server.stop(0)
    # The next start reuses the file: the secret still opens.
    again = await start_server([spec_with(EventsSettings.model_validate(FAST))], settings=settings)
    api = await open_api(again, channels)
    await api.publish(f"models/m-{uuid.uuid4().hex[:6]}/versions/1")
    await receiver.wait_for(lambda got: len(got) >= 1)
    verify_signature(created.secret, receiver.received[0].headers, receiver.received[0].body)
