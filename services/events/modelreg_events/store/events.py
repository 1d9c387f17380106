"""The event log in PostgreSQL.

Appends take a transaction-scoped advisory lock before drawing sequences, so sequences are
handed out and committed in the same order: once a reader sees sequence N, every lower
sequence is already visible. That is what lets Subscribe resume with `sequence > last`
and miss nothing. The lock is held only for the insert of one batch.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from modelreg_common import filters as grammar
from modelreg_events.domain.filters import EventFilter
from modelreg_events.domain.models import EventRecord, NewEvent

NOTIFY_CHANNEL = "modelreg_events"
_APPEND_LOCK = 0x6D6F64656C726567  # "modelreg": one key for the whole log

# After a PostgreSQL crash the sequence moves this far ahead (see migration 0005): more than
# the appends that can be committed but not yet flushed at a crash (each caller flushes before
# its next append: at most one batch of MAX_PUBLISH_BATCH per connection), with room to spare.
_RESTART_GAP = 10_000_000

# One statement, so one round trip and its own transaction. `lock` is joined into the rows
# being inserted, so it is taken before the first sequence is drawn. Data-modifying CTEs do not
# see each other's rows, so the deliveries come from `appended` (RETURNING), and the foreign
# key to `events` is checked at the end of the statement, when the new rows are visible.
#
# The commit does not wait for the WAL flush (`set_config(..., true)` is SET LOCAL, read at
# commit): the rows and the NOTIFY are visible at once, and `make_durable` flushes before the
# caller is answered. The first append after a crash (`log_alive` emptied) instead commits
# synchronously, after moving the sequence past whatever a lost unflushed tail may have used.
_APPEND = """
WITH lock AS (
    SELECT pg_advisory_xact_lock($1) AS held
), crash AS (
    SELECT NOT EXISTS (SELECT 1 FROM log_alive) AS after FROM lock
), guard AS (
    SELECT set_config('synchronous_commit',
                      CASE WHEN after THEN current_setting('synchronous_commit') ELSE 'off' END,
                      true) AS commit_mode,
           CASE WHEN after THEN setval(
               pg_get_serial_sequence('events', 'sequence'),
               nextval(pg_get_serial_sequence('events', 'sequence')) + $13)
           END AS moved_to
    FROM crash
), alive AS (
    INSERT INTO log_alive SELECT true FROM crash WHERE after ON CONFLICT DO NOTHING
), appended AS (
    INSERT INTO events (id, source, type, subject, actor, request_id, data, trace_context,
                        occurred_at, peer)
    SELECT e.id, e.source, e.type, e.subject, e.actor, e.request_id, e.data::jsonb,
           e.trace_context::jsonb, e.occurred_at, e.peer
    FROM guard, unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                      $8::text[], $9::text[], $10::timestamptz[], $11::text[])
         WITH ORDINALITY
         AS e(id, source, type, subject, actor, request_id, data, trace_context, occurred_at,
              peer, ord)
    ORDER BY e.ord
    ON CONFLICT (id) DO NOTHING
    RETURNING sequence, id, type, subject
), delivered AS (
    INSERT INTO deliveries (webhook_id, event_sequence)
    SELECT w.id, a.sequence
    FROM appended a
    JOIN webhooks w ON w.state = 'ACTIVE'
     AND (cardinality(w.event_types) = 0 OR a.type = any(w.event_types))
     AND (cardinality(w.models) = 0 OR EXISTS (
            SELECT 1 FROM unnest(w.models) m
            WHERE a.subject = m OR starts_with(a.subject, m || '/')))
    -- The statement's snapshot predates the lock wait: a webhook deleted or disabled since is
    -- rechecked at its newest version (dropped), instead of failing the foreign key.
    FOR KEY SHARE OF w
    ON CONFLICT DO NOTHING
), notified AS (
    SELECT pg_notify($12, max(sequence)::text) FROM appended HAVING count(*) > 0
)
SELECT sequence, id, (SELECT count(*) FROM notified) AS notified FROM appended
"""

# A synchronous commit of a sequence bump: it flushes all WAL before it (`make_durable`).
_FLUSH = "SELECT setval('log_flush', 1)"

# Parsed on every new pooled connection: the append is the log's hot path (see create_pool).
WARM_STATEMENTS = (_APPEND,)

_COLUMNS = (
    "sequence, id, source, type, subject, actor, request_id, data, trace_context,"
    " occurred_at, published_at, peer"
)

# The filterable fields; SQL written here, never taken from the filter text.
EVENT_FIELDS: grammar.Fields = {
    "type": grammar.Field("type"),
    "subject": grammar.Field("subject"),
    "actor": grammar.Field("actor"),
    "source": grammar.Field("source"),
    "request_id": grammar.Field("request_id"),
    "time": grammar.Field("occurred_at", grammar.FieldType.TIMESTAMP),
    "sequence": grammar.Field("sequence", grammar.FieldType.INTEGER),
    "peer": grammar.Field("peer"),
}


def record(row: asyncpg.Record) -> EventRecord:
    return EventRecord(
        sequence=row["sequence"],
        id=row["id"],
        source=row["source"],
        type=row["type"],
        subject=row["subject"],
        actor=row["actor"],
        request_id=row["request_id"],
        data=row["data"],
        trace_context=row["trace_context"],
        occurred_at=row["occurred_at"],
        published_at=row["published_at"],
        peer=row["peer"],
    )


def compile_filter(flt: EventFilter, params: grammar.SqlParams) -> str:
    """An SQL condition for `flt` (InvalidArgument on `filter` for an unknown field or a
    value of the wrong type); its values go to `params`."""
    return grammar.compile_filter(flt.node, EVENT_FIELDS, params)


def readable_sql(readable: frozenset[str] | None, params: grammar.SqlParams, subject: str) -> str:
    """An SQL condition keeping events about the `readable` models (None: every event).

    Only `models/{m}` and `models/{m}/...` subjects belong to a model; registry-wide events
    (experiments, API keys, policies) are hidden from a caller who cannot read every model.
    """
    if readable is None:
        return "TRUE"
    models = params.add(sorted(readable))
    return (
        f"(starts_with({subject}, 'models/')"
        f" AND split_part({subject}, '/', 2) = any({models}::text[]))"
    )


class EventStore:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        """Append in order; an id already in the log gets 0. New events also get a PENDING
        delivery for every ACTIVE webhook that matches, in the same transaction, so a
        delivery can never be lost between the log and the webhook worker.

        Visible at once but not yet durable: call `make_durable` before acknowledging."""
        if not events:
            return []
        rows = await self._pool.fetch(
            _APPEND,
            _APPEND_LOCK,
            [e.id for e in events],
            [e.source for e in events],
            [e.type for e in events],
            [e.subject for e in events],
            [e.actor for e in events],
            [e.request_id for e in events],
            [json.dumps(e.data) for e in events],
            [json.dumps(e.trace_context) for e in events],
            [e.occurred_at for e in events],
            [e.peer for e in events],
            NOTIFY_CHANNEL,
            _RESTART_GAP,
        )
        new = {r["id"]: r["sequence"] for r in rows}
        return [new.get(e.id, 0) for e in events]

    async def make_durable(self) -> None:
        """Wait until everything appended so far is flushed to disk: a synchronous commit
        that writes WAL flushes all WAL before it, earlier unflushed commits included."""
        await self._pool.execute(_FLUSH)

    async def get(
        self, event_id: uuid.UUID, *, readable: frozenset[str] | None = None
    ) -> EventRecord | None:
        params = grammar.SqlParams([event_id])
        visible = readable_sql(readable, params, "subject")
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM events WHERE id = $1 AND {visible}", *params.values
        )
        return record(row) if row is not None else None

    async def last_sequence(self) -> int:
        value = await self._pool.fetchval("SELECT coalesce(max(sequence), 0) FROM events")
        return int(value)

    async def page(
        self,
        flt: EventFilter,
        *,
        after: int | None,
        limit: int,
        descending: bool = False,
        readable: frozenset[str] | None = None,
    ) -> list[EventRecord]:
        params = grammar.SqlParams()
        clauses = [compile_filter(flt, params), readable_sql(readable, params, "subject")]
        if after is not None:
            clauses.append(f"sequence {'<' if descending else '>'} {params.add(after)}")
        limit_param = params.add(limit)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)}"
            f" ORDER BY sequence {'DESC' if descending else 'ASC'} LIMIT {limit_param}",
            *params.values,
        )
        return [record(r) for r in rows]

    async def get_many(self, sequences: Sequence[int]) -> dict[int, EventRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE sequence = any($1::bigint[])", list(sequences)
        )
        return {r["sequence"]: record(r) for r in rows}
