"""The JSON body and headers of a webhook delivery."""

from __future__ import annotations

import json
from typing import Any

from modelreg_events.domain.models import EventRecord
from modelreg_events.domain.signing import signature_header


def _time(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def event_json(event: EventRecord) -> dict[str, Any]:
    """CloudEvents-flavoured JSON rendering of an event."""
    return {
        "specversion": "1.0",
        "id": str(event.id),
        "sequence": event.sequence,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": _time(event.occurred_at),
        "actor": event.actor,
        "request_id": event.request_id,
        "data": event.data,
        **(
            {"traceparent": event.trace_context["traceparent"]}
            if "traceparent" in event.trace_context
            else {}
        ),
    }


def body_and_headers(
    event: EventRecord, secrets: tuple[str, ...], timestamp: int
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event_json(event), separators=(",", ":"), sort_keys=True).encode()
    message_id = str(event.id)
    return body, {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(list(secrets), message_id, timestamp, body),
    }
