"""The only place where protos and domain records meet."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2

from modelreg.events.v1 import event_pb2, usage_pb2, webhook_pb2
from modelreg_common.errors import InvalidArgument
from modelreg_common.timestamps import timestamp
from modelreg_events.domain.models import (
    Delivery,
    EventRecord,
    NewEvent,
    NewUsage,
    UsageKind,
    UsageRecord,
    Webhook,
    WebhookState,
)

_WEBHOOK_STATES: dict[int, WebhookState] = {
    webhook_pb2.WEBHOOK_STATE_ACTIVE: "ACTIVE",
    webhook_pb2.WEBHOOK_STATE_DISABLED: "DISABLED",
}
_USAGE_KINDS: dict[usage_pb2.UsageKind.ValueType, UsageKind] = {
    usage_pb2.USAGE_KIND_DOWNLOAD: "DOWNLOAD",
    usage_pb2.USAGE_KIND_ALIAS_RESOLUTION: "ALIAS_RESOLUTION",
}
_USAGE_KIND_VALUES = {name: value for value, name in _USAGE_KINDS.items()}
_DELIVERY_STATES = {
    "PENDING": webhook_pb2.DELIVERY_STATE_PENDING,
    "SUCCEEDED": webhook_pb2.DELIVERY_STATE_SUCCEEDED,
    "DEAD_LETTER": webhook_pb2.DELIVERY_STATE_DEAD_LETTER,
}


def duration_ms(ms: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(round(ms))
    return d


def event_to_proto(e: EventRecord) -> event_pb2.Event:
    data = struct_pb2.Struct()
    data.update(e.data)
    return event_pb2.Event(
        name=e.name,
        id=str(e.id),
        sequence=e.sequence,
        source=e.source,
        type=e.type,
        subject=e.subject,
        time=timestamp(e.occurred_at),
        actor=e.actor,
        request_id=e.request_id,
        data=data,
        trace_context=e.trace_context,
        publish_time=timestamp(e.published_at),
        peer=e.peer,
    )


# Integers above this are not exact as doubles, so they stay as they came.
_EXACT_INTEGERS = 2**53


def _whole_numbers_as_ints(value: Any) -> Any:
    """A Struct holds every number as a double, so a version number 3 arrives as 3.0. JSON has
    one number type, but its readers do not agree (Go's encoding/json refuses 3.0 for an int
    field): whole numbers are written back as integers, as the producer wrote them."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INTEGERS:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers_as_ints(v) for v in value]
    return value


def event_from_proto(p: event_pb2.Event, source: str, index: int) -> NewEvent:
    field = f"events[{index}]"
    try:
        event_id = uuid.UUID(p.id)
    except ValueError:
        raise InvalidArgument(f"{field}.id", f"{p.id!r} is not a UUID") from None
    data: dict[str, Any] = (
        _whole_numbers_as_ints(json_format.MessageToDict(p.data)) if p.HasField("data") else {}
    )
    return NewEvent(
        id=event_id,
        source=p.source or source,
        type=p.type,
        subject=p.subject,
        actor=p.actor,
        request_id=p.request_id,
        data=data,
        trace_context=dict(p.trace_context),
        occurred_at=p.time.ToDatetime(UTC) if p.HasField("time") else datetime.now(UTC),
        peer=p.peer,
    )


def webhook_state(value: int, field: str) -> WebhookState:
    if value == webhook_pb2.WEBHOOK_STATE_UNSPECIFIED:
        return "ACTIVE"
    state = _WEBHOOK_STATES.get(value)
    if state is None:
        raise InvalidArgument(field, f"unknown state {value}")
    return state


def webhook_to_proto(w: Webhook) -> webhook_pb2.Webhook:
    p = webhook_pb2.Webhook(
        name=w.name,
        url=w.url,
        event_types=list(w.event_types),
        models=list(w.models),
        state=webhook_pb2.WEBHOOK_STATE_ACTIVE
        if w.state == "ACTIVE"
        else webhook_pb2.WEBHOOK_STATE_DISABLED,
        description=w.description,
        create_time=timestamp(w.created_at),
        update_time=timestamp(w.updated_at),
        etag=w.etag,
    )
    if w.previous_secret_expires_at is not None:
        p.previous_secret_expire_time.CopyFrom(timestamp(w.previous_secret_expires_at))
    return p


def delivery_to_proto(d: Delivery) -> webhook_pb2.Delivery:
    p = webhook_pb2.Delivery(
        name=d.name,
        event=f"events/{d.event_id}",
        event_sequence=d.event_sequence,
        event_type=d.event_type,
        state=_DELIVERY_STATES[d.state],
        attempt_count=d.attempt_count,
        last_status_code=d.last_status_code,
        last_latency=duration_ms(d.last_latency_ms),
        last_error=d.last_error,
        create_time=timestamp(d.created_at),
        update_time=timestamp(d.updated_at),
        attempts=[
            webhook_pb2.DeliveryAttempt(
                attempt=a.attempt,
                start_time=timestamp(a.started_at),
                status_code=a.status_code,
                latency=duration_ms(a.latency_ms),
                error=a.error,
            )
            for a in d.attempts
        ],
    )
    if d.state == "PENDING":
        p.next_attempt_time.CopyFrom(timestamp(d.next_attempt_at))
    return p


def usage_from_proto(p: usage_pb2.UsageRecord) -> NewUsage:
    """Unknown kinds and a missing hour become None, for the domain to name the field."""
    return NewUsage(
        model_version=p.model_version,
        principal=p.principal,
        kind=_USAGE_KINDS.get(p.kind),
        hour_start=p.hour_start_time.ToDatetime(UTC) if p.HasField("hour_start_time") else None,
        count=p.count,
    )


def usage_to_proto(r: UsageRecord) -> usage_pb2.UsageRecord:
    return usage_pb2.UsageRecord(
        model_version=r.model_version,
        principal=r.principal,
        kind=_USAGE_KIND_VALUES[r.kind],
        hour_start_time=timestamp(r.hour_start),
        count=r.count,
    )
