"""Webhooks and their deliveries in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from modelreg_common import idempotency as idempotency_keys
from modelreg_common.errors import Aborted, AlreadyExists, EtagMismatch, LimitExceeded, NotFound
from modelreg_common.filters import SqlParams
from modelreg_events.domain.models import (
    Attempt,
    Delivery,
    DeliveryJob,
    DeliveryState,
    Idempotency,
    SendResult,
    Webhook,
    WebhookPatch,
)
from modelreg_events.store.events import _COLUMNS as _EVENT_COLUMNS
from modelreg_events.store.events import NOTIFY_CHANNEL, readable_sql, record

_WEBHOOK_COLUMNS = (
    "id, url, event_types, models, state, description, revision, created_at, updated_at,"
    " CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END"
    " AS previous_secret_expires_at"
)
_DELIVERY_COLUMNS = (
    "d.id, d.webhook_id, e.id AS event_id, d.event_sequence, e.type AS event_type, d.state,"
    " d.attempt_count, d.next_attempt_at, d.last_status_code, d.last_latency_ms, d.last_error,"
    " d.created_at, d.updated_at"
)


def _webhook(row: asyncpg.Record) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        models=tuple(row["models"]),
        state=row["state"],
        description=row["description"],
        revision=row["revision"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        previous_secret_expires_at=row["previous_secret_expires_at"],
    )


def _delivery(row: asyncpg.Record, attempts: tuple[Attempt, ...] = ()) -> Delivery:
    return Delivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        event_id=row["event_id"],
        event_sequence=row["event_sequence"],
        event_type=row["event_type"],
        state=row["state"],
        attempt_count=row["attempt_count"],
        next_attempt_at=row["next_attempt_at"],
        last_status_code=row["last_status_code"],
        last_latency_ms=row["last_latency_ms"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempts=attempts,
    )


def _attempt(a: asyncpg.Record) -> Attempt:
    return Attempt(a["attempt"], a["started_at"], a["status_code"], a["latency_ms"], a["error"])


class WebhookStore:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    # -- webhooks ------------------------------------------------------------------------

    async def create(
        self,
        webhook: Webhook,
        secret: str,
        *,
        max_webhooks: int,
        idempotency: Idempotency | None = None,
    ) -> Webhook | bytes:
        async with self._pool.acquire() as conn, conn.transaction():
            if idempotency is not None:
                saved = await idempotency_keys.lookup(
                    conn, idempotency.request_id, idempotency.method, idempotency.digest
                )
                if saved is not None:
                    return saved
            count = await conn.fetchval("SELECT count(*) FROM webhooks")
            if count >= max_webhooks:
                raise LimitExceeded(
                    f"at most {max_webhooks} webhooks", limit=f"max_webhooks={max_webhooks}"
                )
            try:
                row = await conn.fetchrow(
                    f"""
                    INSERT INTO webhooks (id, url, event_types, models, state, description,
                                          secret)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    RETURNING {_WEBHOOK_COLUMNS}
                    """,
                    webhook.id,
                    webhook.url,
                    list(webhook.event_types),
                    list(webhook.models),
                    webhook.state,
                    webhook.description,
                    secret,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(webhook.name, kind="webhook") from None
            assert row is not None
            created = _webhook(row)
            if idempotency is not None:
                try:
                    await idempotency_keys.save(
                        conn,
                        idempotency.request_id,
                        idempotency.method,
                        idempotency.digest,
                        idempotency.render(created, secret),
                    )
                except asyncpg.UniqueViolationError:
                    raise Aborted(
                        "a concurrent request with the same request_id won; retry to get its "
                        "response"
                    ) from None
        return created

    async def get(self, webhook_id: str) -> Webhook:
        row = await self._pool.fetchrow(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1", webhook_id
        )
        if row is None:
            raise NotFound(f"webhooks/{webhook_id}", kind="webhook")
        return _webhook(row)

    async def list_webhooks(self, *, after: str | None, limit: int) -> list[Webhook]:
        rows = await self._pool.fetch(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE $1::text IS NULL OR id > $1"
            " ORDER BY id LIMIT $2",
            after,
            limit,
        )
        return [_webhook(r) for r in rows]

    async def update(self, patch: WebhookPatch, *, etag: str | None) -> Webhook:
        async with self._pool.acquire() as conn, conn.transaction():
            revision = await conn.fetchval(
                "SELECT revision FROM webhooks WHERE id = $1 FOR UPDATE", patch.id
            )
            name = f"webhooks/{patch.id}"
            if revision is None:
                raise NotFound(name, kind="webhook")
            if etag and etag != f'"{revision}"':
                raise EtagMismatch(name)
            row = await conn.fetchrow(
                f"""
                UPDATE webhooks SET
                    url = coalesce($2, url),
                    event_types = coalesce($3, event_types),
                    models = coalesce($4, models),
                    state = coalesce($5, state),
                    description = coalesce($6, description),
                    revision = revision + 1,
                    updated_at = now()
                WHERE id = $1
                RETURNING {_WEBHOOK_COLUMNS}
                """,
                patch.id,
                patch.url,
                list(patch.event_types) if patch.event_types is not None else None,
                list(patch.models) if patch.models is not None else None,
                patch.state,
                patch.description,
            )
        assert row is not None
        return _webhook(row)

    async def delete(self, webhook_id: str, *, etag: str | None) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            revision = await conn.fetchval(
                "SELECT revision FROM webhooks WHERE id = $1 FOR UPDATE", webhook_id
            )
            name = f"webhooks/{webhook_id}"
            if revision is None:
                raise NotFound(name, kind="webhook")
            if etag and etag != f'"{revision}"':
                raise EtagMismatch(name)
            await conn.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)

    async def rotate_secret(self, webhook_id: str, secret: str, overlap_seconds: float) -> Webhook:
        row = await self._pool.fetchrow(
            f"""
            UPDATE webhooks SET
                previous_secret = secret,
                previous_secret_expires_at = now() + make_interval(secs => $3),
                secret = $2,
                revision = revision + 1,
                updated_at = now()
            WHERE id = $1
            RETURNING {_WEBHOOK_COLUMNS}
            """,
            webhook_id,
            secret,
            overlap_seconds,
        )
        if row is None:
            raise NotFound(f"webhooks/{webhook_id}", kind="webhook")
        return _webhook(row)

    async def signing_secrets(self, webhook_id: str) -> tuple[str, tuple[str, ...]]:
        row = await self._pool.fetchrow(
            "SELECT url, secret, CASE WHEN previous_secret_expires_at > now()"
            " THEN previous_secret END AS previous FROM webhooks WHERE id = $1",
            webhook_id,
        )
        if row is None:
            raise NotFound(f"webhooks/{webhook_id}", kind="webhook")
        valid = (row["secret"],) + ((row["previous"],) if row["previous"] else ())
        return row["url"], valid

    # -- deliveries ----------------------------------------------------------------------

    async def list_deliveries(
        self,
        webhook_id: str,
        *,
        state: DeliveryState | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        readable: frozenset[str] | None = None,
    ) -> list[Delivery]:
        await self.get(webhook_id)
        params = SqlParams(
            [webhook_id, state, after[0] if after else None, after[1] if after else None, limit]
        )
        visible = readable_sql(readable, params, "e.subject")
        rows = await self._pool.fetch(
            f"""
            SELECT {_DELIVERY_COLUMNS}
            FROM deliveries d JOIN events e ON e.sequence = d.event_sequence
            WHERE d.webhook_id = $1
              AND ($2::text IS NULL OR d.state = $2)
              AND ($3::timestamptz IS NULL OR (d.created_at, d.id) < ($3, $4::uuid))
              AND {visible}
            ORDER BY d.created_at DESC, d.id DESC
            LIMIT $5
            """,
            *params.values,
        )
        ids = [r["id"] for r in rows]
        attempts: dict[uuid.UUID, list[Attempt]] = {i: [] for i in ids}
        for a in await self._pool.fetch(
            "SELECT delivery_id, attempt, started_at, status_code, latency_ms, error"
            " FROM delivery_attempts WHERE delivery_id = any($1::uuid[])"
            " ORDER BY delivery_id, attempt",
            ids,
        ):
            attempts[a["delivery_id"]].append(_attempt(a))
        return [_delivery(r, tuple(attempts[r["id"]])) for r in rows]

    async def get_delivery(self, delivery_id: uuid.UUID) -> Delivery:
        row = await self._pool.fetchrow(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d"
            " JOIN events e ON e.sequence = d.event_sequence WHERE d.id = $1",
            delivery_id,
        )
        assert row is not None
        attempts = tuple(
            _attempt(a)
            for a in await self._pool.fetch(
                "SELECT attempt, started_at, status_code, latency_ms, error"
                " FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
                delivery_id,
            )
        )
        return _delivery(row, attempts)

    async def redeliver(self, webhook_id: str, event_id: uuid.UUID) -> uuid.UUID:
        """Make the (webhook, event) delivery PENDING and due now, creating it if needed."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT 1 FROM webhooks WHERE id = $1", webhook_id) is None:
                raise NotFound(f"webhooks/{webhook_id}", kind="webhook")
            sequence = await conn.fetchval("SELECT sequence FROM events WHERE id = $1", event_id)
            if sequence is None:
                raise NotFound(f"events/{event_id}", kind="event")
            delivery_id: uuid.UUID = await conn.fetchval(
                """
                INSERT INTO deliveries (webhook_id, event_sequence) VALUES ($1, $2)
                ON CONFLICT (webhook_id, event_sequence) DO UPDATE
                SET state = 'PENDING', next_attempt_at = now(), updated_at = now(),
                    round_start = deliveries.attempt_count
                RETURNING id
                """,
                webhook_id,
                sequence,
            )
            await conn.execute("SELECT pg_notify($1, '0')", NOTIFY_CHANNEL)
        return delivery_id

    async def claim(self, limit: int, lease_seconds: float) -> list[DeliveryJob]:
        """Claim due deliveries for `lease_seconds`. No transaction stays open during the
        HTTP call: the lease (next_attempt_at pushed forward) is the claim, so a worker that
        dies mid-attempt hands the row back when the lease runs out."""
        # One statement, its own transaction: one round trip. A lease lost in a crash only
        # means the delivery is attempted again (at least once anyway), so the claim need not
        # wait for a WAL flush (`set_config(..., true)` is SET LOCAL; read at commit).
        rows = await self._pool.fetch(
            f"""
            WITH due AS (
                SELECT id FROM deliveries
                WHERE state = 'PENDING' AND next_attempt_at <= now()
                ORDER BY next_attempt_at
                LIMIT $1
                FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE deliveries d
                SET next_attempt_at = now() + make_interval(secs => $2),
                    attempt_count = d.attempt_count + 1
                FROM due WHERE d.id = due.id
                RETURNING d.id AS delivery_id, d.webhook_id, d.event_sequence,
                          d.attempt_count, d.round_start
            ), no_flush AS (
                SELECT set_config('synchronous_commit', 'off', true) AS value
            )
            SELECT c.delivery_id, c.webhook_id, c.attempt_count, c.round_start, w.url, w.secret,
                   CASE WHEN w.previous_secret_expires_at > now()
                        THEN w.previous_secret END AS previous_secret,
                   {", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))}
            FROM claimed c
            JOIN webhooks w ON w.id = c.webhook_id
            JOIN events e ON e.sequence = c.event_sequence
            CROSS JOIN no_flush
            ORDER BY e.sequence
            """,
            limit,
            lease_seconds,
        )
        return [
            DeliveryJob(
                delivery_id=r["delivery_id"],
                webhook_id=r["webhook_id"],
                url=r["url"],
                secrets=(r["secret"],) + ((r["previous_secret"],) if r["previous_secret"] else ()),
                attempt=r["attempt_count"],
                round_attempt=r["attempt_count"] - r["round_start"],
                event=record(r),
            )
            for r in rows
        ]

    async def next_due_in(self) -> float | None:
        """Seconds until the earliest PENDING delivery is due (<= 0: now), or None."""
        value = await self._pool.fetchval(
            "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM deliveries"
            " WHERE state = 'PENDING'"
        )
        return float(value) if value is not None else None

    async def record_attempt(
        self,
        job: DeliveryJob,
        started_at: datetime,
        result: SendResult,
        *,
        retry_in: float | None,
    ) -> DeliveryState:
        """Log the attempt; SUCCEEDED, PENDING again after `retry_in`, or DEAD_LETTER when
        `retry_in` is None."""
        state: DeliveryState = (
            "SUCCEEDED" if result.ok else ("PENDING" if retry_in is not None else "DEAD_LETTER")
        )
        # One statement, its own transaction: one round trip.
        await self._pool.execute(
            """
            WITH logged AS (
                INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status_code,
                                               latency_ms, error)
                VALUES ($1, $7, $8, $4, $5, $6)
                ON CONFLICT (delivery_id, attempt) DO NOTHING
            )
            UPDATE deliveries SET state = $2,
                next_attempt_at = CASE WHEN $2 = 'PENDING'
                    THEN now() + make_interval(secs => $3) ELSE next_attempt_at END,
                last_status_code = $4, last_latency_ms = $5, last_error = $6,
                updated_at = now()
            WHERE id = $1 AND attempt_count = $7
            """,
            job.delivery_id,
            state,
            retry_in or 0.0,
            result.status_code,
            result.latency_ms,
            result.error,
            job.attempt,
            started_at,
        )
        return state
