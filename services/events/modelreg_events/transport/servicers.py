"""gRPC servicers: proto in, domain call, proto out. No rules live here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from grpc import aio

from modelreg.events.v1 import (
    event_service_pb2,
    event_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from modelreg_common.access import current_access, readable_models
from modelreg_common.authorizer import Authorizer, FollowedAccess
from modelreg_common.context import current_call, current_principal
from modelreg_common.errors import InvalidArgument
from modelreg_common.idempotency import request_hash
from modelreg_common.page_tokens import PageTokens, fingerprint, page_size
from modelreg_events.domain.events import EventsService, ReadableModels, parse_event_name
from modelreg_events.domain.filters import parse_filter
from modelreg_events.domain.models import (
    DeliveryState,
    EventRecord,
    Idempotency,
    Webhook,
    WebhookPatch,
)
from modelreg_events.domain.webhooks import UPDATABLE, WebhooksService, parse_webhook_name
from modelreg_events.transport import convert

Context = aio.ServicerContext[Any, Any]
_DELIVERY_FILTER_STATES: dict[str, DeliveryState] = {
    s: s for s in ("PENDING", "SUCCEEDED", "DEAD_LETTER")
}


def _order(order_by: str) -> bool:
    """True for descending."""
    normalized = " ".join(order_by.split()).lower()
    if normalized in ("", "sequence", "sequence asc"):
        return False
    if normalized == "sequence desc":
        return True
    raise InvalidArgument("order_by", "must be `sequence` or `sequence desc`")


async def publish_events(
    service: EventsService,
    request: event_service_pb2.PublishEventsRequest,
    *,
    appended: Callable[[], None] | None = None,
) -> event_service_pb2.PublishEventsResponse:
    """PublishEvents without a call: the gRPC method, and relays in this process (which
    learn through `appended` when the events are in the log, before they are durable)."""
    events = [convert.event_from_proto(e, request.source, i) for i, e in enumerate(request.events)]
    sequences = await service.publish(events, appended=appended)
    return event_service_pb2.PublishEventsResponse(
        sequences=sequences, duplicate_count=sum(1 for s in sequences if s == 0)
    )


class EventServicer(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, service: EventsService, tokens: PageTokens, authorizer: Authorizer) -> None:
        self._service = service
        self._tokens = tokens
        self._authorizer = authorizer

    def _followed_readable(self) -> ReadableModels | None:
        call = current_call()
        access = current_access()
        if call is None or access.internal:
            return None  # the registry's own services, and work outside a call, read all
        followed = FollowedAccess(self._authorizer, call.principal, access, "events.subscribe")
        return followed.readable_models

    async def PublishEvents(
        self, request: event_service_pb2.PublishEventsRequest, context: Context
    ) -> event_service_pb2.PublishEventsResponse:

        return await publish_events(self._service, request)

    async def ListEvents(
        self, request: event_service_pb2.ListEventsRequest, context: Context
    ) -> event_service_pb2.ListEventsResponse:
        limit = page_size(request.page_size)
        flt = parse_filter(request.filter)
        descending = _order(request.order_by)
        query = fingerprint("events", request.filter, descending)
        last = self._tokens.decode(request.page_token, query)
        after = int(last[0]) if last else None
        events = await self._service.list_events(
            flt, after=after, limit=limit + 1, descending=descending, readable=readable_models()
        )
        token = ""
        if len(events) > limit:
            events = events[:limit]
            token = self._tokens.encode(query, [events[-1].sequence])
        return event_service_pb2.ListEventsResponse(
            events=[convert.event_to_proto(e) for e in events], next_page_token=token
        )

    async def GetEvent(
        self, request: event_service_pb2.GetEventRequest, context: Context
    ) -> event_service_pb2.GetEventResponse:
        event = await self._service.get(
            parse_event_name(request.name, "name"), readable=readable_models()
        )
        return event_service_pb2.GetEventResponse(event=convert.event_to_proto(event))

    async def Subscribe(
        self, request: event_service_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[event_service_pb2.SubscribeResponse]:
        flt = parse_filter(request.filter)
        if request.after_sequence < 0:
            raise InvalidArgument("after_sequence", "must not be negative")
        # Taken while the call's identity is bound; re-resolved whenever grants change, so a
        # stream opened before a revocation does not go on showing the model.
        readable = self._followed_readable()
        start = await self._service.start_after(request.after_sequence, from_now=request.from_now)
        # Headers go out once the starting point is fixed: a client that awaits them knows the
        # subscription is in effect (anything appended from now on reaches it).
        await context.send_initial_metadata((("x-modelreg-subscribed-after", str(start)),))
        async for event in self._service.subscribe(
            flt, after=start, from_now=False, readable=readable
        ):
            yield event_service_pb2.SubscribeResponse(event=convert.event_to_proto(event))


class WebhookServicer(webhook_service_pb2_grpc.WebhookServiceServicer):
    def __init__(self, service: WebhooksService, tokens: PageTokens) -> None:
        self._service = service
        self._tokens = tokens

    async def CreateWebhook(
        self, request: webhook_service_pb2.CreateWebhookRequest, context: Context
    ) -> webhook_service_pb2.CreateWebhookResponse:
        w = request.webhook
        idempotency = None
        if request.request_id:
            if len(request.request_id) > 128:
                raise InvalidArgument("request_id", "at most 128 characters")

            def render(webhook: Webhook, secret: str) -> bytes:
                return webhook_service_pb2.CreateWebhookResponse(
                    webhook=convert.webhook_to_proto(webhook), secret=secret
                ).SerializeToString()

            idempotency = Idempotency(
                request.request_id,
                "CreateWebhook",
                request_hash(request.SerializeToString(deterministic=True)),
                render,
            )
        created = await self._service.create(
            webhook_id=request.webhook_id,
            url=w.url,
            event_types=list(w.event_types),
            models=list(w.models),
            state=convert.webhook_state(w.state, "webhook.state"),
            description=w.description,
            now=datetime.now(UTC),
            idempotency=idempotency,
        )
        if isinstance(created, bytes):
            return webhook_service_pb2.CreateWebhookResponse.FromString(created)
        webhook, secret = created
        return webhook_service_pb2.CreateWebhookResponse(
            webhook=convert.webhook_to_proto(webhook), secret=secret
        )

    async def GetWebhook(
        self, request: webhook_service_pb2.GetWebhookRequest, context: Context
    ) -> webhook_service_pb2.GetWebhookResponse:
        webhook = await self._service.get(parse_webhook_name(request.name, "name"))
        return webhook_service_pb2.GetWebhookResponse(webhook=convert.webhook_to_proto(webhook))

    async def ListWebhooks(
        self, request: webhook_service_pb2.ListWebhooksRequest, context: Context
    ) -> webhook_service_pb2.ListWebhooksResponse:
        limit = page_size(request.page_size)
        query = fingerprint("webhooks")
        last = self._tokens.decode(request.page_token, query)
        webhooks = await self._service.list_webhooks(
            after=str(last[0]) if last else None, limit=limit + 1
        )
        token = ""
        if len(webhooks) > limit:
            webhooks = webhooks[:limit]
            token = self._tokens.encode(query, [webhooks[-1].id])
        return webhook_service_pb2.ListWebhooksResponse(
            webhooks=[convert.webhook_to_proto(w) for w in webhooks], next_page_token=token
        )

    async def UpdateWebhook(
        self, request: webhook_service_pb2.UpdateWebhookRequest, context: Context
    ) -> webhook_service_pb2.UpdateWebhookResponse:
        w = request.webhook
        webhook_id = parse_webhook_name(w.name, "webhook.name")
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument("update_mask", f"name the fields to update: {UPDATABLE}")
        for path in paths:
            if path not in UPDATABLE:
                raise InvalidArgument("update_mask", f"{path!r} cannot be updated: {UPDATABLE}")
        patch = WebhookPatch(
            id=webhook_id,
            url=w.url if "url" in paths else None,
            event_types=tuple(w.event_types) if "event_types" in paths else None,
            models=tuple(w.models) if "models" in paths else None,
            state=convert.webhook_state(w.state, "webhook.state") if "state" in paths else None,
            description=w.description if "description" in paths else None,
        )
        webhook = await self._service.update(patch, etag=w.etag or None)
        return webhook_service_pb2.UpdateWebhookResponse(webhook=convert.webhook_to_proto(webhook))

    async def DeleteWebhook(
        self, request: webhook_service_pb2.DeleteWebhookRequest, context: Context
    ) -> webhook_service_pb2.DeleteWebhookResponse:
        await self._service.delete(
            parse_webhook_name(request.name, "name"), etag=request.etag or None
        )
        return webhook_service_pb2.DeleteWebhookResponse()

    async def TestWebhook(
        self, request: webhook_service_pb2.TestWebhookRequest, context: Context
    ) -> webhook_service_pb2.TestWebhookResponse:
        webhook_id = parse_webhook_name(request.name, "name")
        now = datetime.now(UTC)
        event = EventRecord(
            sequence=0,
            id=uuid.uuid4(),
            source="events",
            type="webhook.test",
            subject=f"webhooks/{webhook_id}",
            actor=current_principal().subject,
            request_id="",
            data={"message": "modelreg webhook test"},
            trace_context={},
            occurred_at=now,
            published_at=now,
        )
        result = await self._service.test(webhook_id, event)
        return webhook_service_pb2.TestWebhookResponse(
            success=result.ok,
            status_code=result.status_code,
            latency=convert.duration_ms(result.latency_ms),
            error=result.error,
        )

    async def RotateWebhookSecret(
        self, request: webhook_service_pb2.RotateWebhookSecretRequest, context: Context
    ) -> webhook_service_pb2.RotateWebhookSecretResponse:
        webhook_id = parse_webhook_name(request.name, "name")
        overlap = request.overlap.ToTimedelta().total_seconds()
        webhook, secret = await self._service.rotate_secret(webhook_id, overlap)
        return webhook_service_pb2.RotateWebhookSecretResponse(
            webhook=convert.webhook_to_proto(webhook), secret=secret
        )

    async def ListDeliveries(
        self, request: webhook_service_pb2.ListDeliveriesRequest, context: Context
    ) -> webhook_service_pb2.ListDeliveriesResponse:
        webhook_id = parse_webhook_name(request.parent, "parent")
        limit = page_size(request.page_size)
        state = _delivery_filter(request.filter)
        query = fingerprint("deliveries", request.parent, request.filter)
        last = self._tokens.decode(request.page_token, query)
        after = (datetime.fromisoformat(last[0]), uuid.UUID(last[1])) if last else None
        deliveries = await self._service.list_deliveries(
            webhook_id, state=state, after=after, limit=limit + 1, readable=readable_models()
        )
        token = ""
        if len(deliveries) > limit:
            deliveries = deliveries[:limit]
            tail = deliveries[-1]
            token = self._tokens.encode(query, [tail.created_at.isoformat(), str(tail.id)])
        return webhook_service_pb2.ListDeliveriesResponse(
            deliveries=[convert.delivery_to_proto(d) for d in deliveries], next_page_token=token
        )

    async def RedeliverEvent(
        self, request: webhook_service_pb2.RedeliverEventRequest, context: Context
    ) -> webhook_service_pb2.RedeliverEventResponse:
        webhook_id = parse_webhook_name(request.webhook, "webhook")
        event_id = parse_event_name(request.event, "event")
        delivery = await self._service.redeliver(webhook_id, event_id)
        return webhook_service_pb2.RedeliverEventResponse(
            delivery=convert.delivery_to_proto(delivery)
        )


def _delivery_filter(text: str) -> DeliveryState | None:
    if not text.strip():
        return None
    field, op, value = (text.split("=", 1)[0].strip(), "=", text.split("=", 1)[-1].strip())
    value = value.strip('"')
    if "=" not in text or field != "state" or op != "=" or value not in _DELIVERY_FILTER_STATES:
        raise InvalidArgument(
            "filter", 'only `state = "PENDING" | "SUCCEEDED" | "DEAD_LETTER"` is supported'
        )
    return _DELIVERY_FILTER_STATES[value]
