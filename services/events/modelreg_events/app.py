"""Composition root of the events service: the event log, subscriptions, webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from grpc import aio

from modelreg.events.v1 import (
    event_service_pb2,
    event_service_pb2_grpc,
    usage_service_pb2_grpc,
    webhook_service_pb2_grpc,
)
from modelreg_common.logs import get_logger
from modelreg_common.relay import serve_events_locally
from modelreg_common.server import ServiceRuntime, ServiceSpec
from modelreg_common.waits import cancel_and_wait
from modelreg_events.delivery import DeliveryWorkers
from modelreg_events.domain.events import EventsService
from modelreg_events.domain.secret_box import KeyRing
from modelreg_events.domain.usage import UsageService
from modelreg_events.domain.webhooks import WebhooksService
from modelreg_events.settings import EventsSettings
from modelreg_events.store import events as event_store
from modelreg_events.store import webhooks as webhook_store
from modelreg_events.store.events import EventStore
from modelreg_events.store.http_sender import HttpSender
from modelreg_events.store.notifier import LogNotifier
from modelreg_events.store.secret_keys import load_key_ring
from modelreg_events.store.usage import UsageStore
from modelreg_events.store.webhooks import WebhookStore
from modelreg_events.transport.servicers import EventServicer, WebhookServicer, publish_events
from modelreg_events.transport.usage import UsageServicer

EVENT_SERVICE = "modelreg.events.v1.EventService"
WEBHOOK_SERVICE = "modelreg.events.v1.WebhookService"
USAGE_SERVICE = "modelreg.events.v1.UsageService"

log = get_logger("modelreg.events")


class EventsComponent:
    def __init__(self, runtime: ServiceRuntime, settings: EventsSettings, ring: KeyRing) -> None:
        self.settings = settings
        self.log = EventStore(runtime.pool)
        self.webhook_store = WebhookStore(runtime.pool, ring)
        self.notifier = LogNotifier(runtime.dsn)
        self.sender = HttpSender(
            allow_private=settings.allow_private_targets,
            timeout_seconds=settings.delivery_timeout_seconds,
        )
        self.events = EventsService(
            self.log,
            self.notifier,
            poll_interval=settings.poll_interval_seconds,
            page_size=settings.subscribe_page_size,
        )
        self.webhooks = WebhooksService(
            self.webhook_store,
            self.sender,
            allow_private_targets=settings.allow_private_targets,
            max_webhooks=settings.max_webhooks,
            default_overlap_seconds=settings.default_rotation_overlap_seconds,
        )
        self.workers = DeliveryWorkers(self.webhook_store, self.sender, self.notifier, settings)
        self.usage = UsageService(
            UsageStore(runtime.pool),
            batch_retention=timedelta(hours=settings.usage_batch_retention_hours),
        )
        self._tokens = runtime.page_tokens
        self._peers = runtime.peers
        self._authorizer = runtime.authorizer
        self._cleanup: asyncio.Task[None] | None = None

    @property
    def service_names(self) -> Sequence[str]:
        return [EVENT_SERVICE, WEBHOOK_SERVICE, USAGE_SERVICE]

    def register(self, server: aio.Server) -> None:
        event_service_pb2_grpc.add_EventServiceServicer_to_server(
            EventServicer(self.events, self._tokens, self._authorizer), server
        )
        webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server(
            WebhookServicer(self.webhooks, self._tokens), server
        )
        usage_service_pb2_grpc.add_UsageServiceServicer_to_server(
            UsageServicer(self.usage, self._tokens), server
        )

    async def _forget_usage_batches(self) -> None:
        # Every replica sweeps; the deletes are idempotent and cheap when there is nothing old.
        while True:
            try:
                forgotten = await self.usage.forget_batches(datetime.now(UTC))
                if forgotten:
                    log.info("usage.batches_forgotten", count=forgotten)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("usage.cleanup_failed", error=str(exc)[:300])
            await asyncio.sleep(self.settings.usage_cleanup_interval_seconds)

    async def _publish(
        self, request: event_service_pb2.PublishEventsRequest, appended: Callable[[], None]
    ) -> event_service_pb2.PublishEventsResponse:
        return await publish_events(self.events, request, appended=appended)

    async def start(self) -> None:
        self.notifier.start(await self.log.last_sequence())
        self.workers.start()
        # This server's relays skip loopback gRPC (see modelreg_common.relay).
        serve_events_locally(self._peers, self._publish)
        self._cleanup = asyncio.create_task(self._forget_usage_batches(), name="usage-cleanup")

    async def stop(self) -> None:
        serve_events_locally(self._peers, None)
        await cancel_and_wait(self._cleanup)
        self._cleanup = None
        await self.workers.stop()
        await self.notifier.stop()
        await self.sender.close()


async def _component(runtime: ServiceRuntime, settings: EventsSettings) -> EventsComponent:
    ring = await asyncio.to_thread(load_key_ring, settings, runtime.settings.home)
    component = EventsComponent(runtime, settings, ring)
    # Before serving: secrets stored in clear by an earlier release are sealed now, so an
    # upgrade keeps every webhook and leaves no secret readable in the database.
    sealed = await component.webhook_store.seal_clear_secrets()
    if sealed:
        log.info("webhooks.secrets_sealed", count=sealed, key_id=ring.primary)
    missing = ring.unknown(await component.webhook_store.sealing_key_ids())
    if missing:
        # Creating webhooks still works; delivering to, testing or rotating the affected ones
        # fails with this key id until the key is configured again.
        log.error("webhooks.secret_keys_missing", key_ids=missing, configured=ring.key_ids)
    return component


async def create(runtime: ServiceRuntime) -> EventsComponent:
    # Read here, not at import: tests and the CLI construct settings before starting.
    return await _component(runtime, runtime.extras.get("events_settings") or EventsSettings())


WARM_STATEMENTS = (*event_store.WARM_STATEMENTS, *webhook_store.WARM_STATEMENTS)

SPEC = ServiceSpec(
    name="events",
    schema="events",
    migrations_package="modelreg_events.store.migrations",
    create=create,
    warm_statements=WARM_STATEMENTS,
)


def spec_with(settings: EventsSettings) -> ServiceSpec:
    """The events service with explicit settings (tests, benchmarks)."""

    async def create_with(runtime: ServiceRuntime) -> EventsComponent:
        return await _component(runtime, settings)

    return ServiceSpec(
        name="events",
        schema="events",
        migrations_package="modelreg_events.store.migrations",
        create=create_with,
        warm_statements=WARM_STATEMENTS,
    )
