"""The transactional outbox: a service records its events in its own `outbox` table inside the
transaction of the change, so an acknowledged change always has its event. A relay ships the
rows to the events service (at least once, deduplicated by event id)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelreg_common.context import current_call, current_principal
from modelreg_common.database import Connection
from modelreg_common.telemetry import inject_trace_context

NOTIFY_CHANNEL = "modelreg_outbox"


@dataclass(frozen=True)
class OutboxEvent:
    """`type` is `entity.action` (`model_version.created`); `subject` the resource name."""

    type: str
    subject: str
    data: Mapping[str, Any] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    # Default to the caller of the current RPC.
    actor: str | None = None
    request_id: str | None = None


async def add_events(conn: Connection, events: Sequence[OutboxEvent]) -> None:
    """Record `events` in the outbox of the connection's schema. Must run inside the
    transaction of the change they describe."""
    if not events:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("outbox events must be written inside the change's transaction")
    call = current_call()
    actor = current_principal().subject
    request_id = call.request_id if call is not None else ""
    peer = call.peer if call is not None else ""
    trace = inject_trace_context()
    await conn.executemany(
        "INSERT INTO outbox (id, type, subject, actor, request_id, data, trace_context, peer)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (
                e.id,
                e.type,
                e.subject,
                e.actor or actor,
                e.request_id if e.request_id is not None else request_id,
                dict(e.data),
                trace,
                peer,
            )
            for e in events
        ],
    )
    # Delivered at commit, so the relay wakes only for committed rows.
    await conn.execute("SELECT pg_notify($1, current_schema())", NOTIFY_CHANNEL)


async def add_event(conn: Connection, event: OutboxEvent) -> None:
    await add_events(conn, [event])
