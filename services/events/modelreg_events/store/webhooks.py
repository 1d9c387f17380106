"""Webhooks and their deliveries in PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from modelreg_common import idempotency as idempotency_keys
from modelreg_common.errors import (
    Aborted,
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    LimitExceeded,
    NotFound,
)
from modelreg_common.filters import SqlParams
from modelreg_common.logs import get_logger
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
from modelreg_events.domain.secret_box import (
    SEALED_PREFIX,
    KeyRing,
    SealedSecretInvalid,
    UnknownKeyId,
    is_sealed,
    key_id,
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


# A claim is one statement, its own transaction: one round trip. A lease lost in a crash only
# means the delivery is attempted again (at least once anyway), so the claim need not wait
# for a WAL flush (`set_config(..., true)` is SET LOCAL; read at commit).
_CLAIM_DELIVERIES = f"""
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
SELECT c.delivery_id, c.webhook_id, c.attempt_count, c.round_start, w.url,
       w.secret, w.secret_box,
       CASE WHEN w.previous_secret_expires_at > now()
            THEN w.previous_secret END AS previous_secret,
       CASE WHEN w.previous_secret_expires_at > now()
            THEN w.previous_secret_box END AS previous_secret_box,
       {", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))}
FROM claimed c
JOIN webhooks w ON w.id = c.webhook_id
JOIN events e ON e.sequence = c.event_sequence
CROSS JOIN no_flush
ORDER BY e.sequence
"""

# The attempt's log row and the delivery's new state: one statement, one round trip.
_RECORD_ATTEMPT = """
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
"""

# Parsed on every new pooled connection: the delivery worker's path (see create_pool).
WARM_STATEMENTS = (_CLAIM_DELIVERIES, _RECORD_ATTEMPT)


async def _read_delivery(conn: Any, delivery_id: uuid.UUID) -> Delivery:
    row = await conn.fetchrow(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d"
        " JOIN events e ON e.sequence = d.event_sequence WHERE d.id = $1",
        delivery_id,
    )
    assert row is not None
    attempts = tuple(
        _attempt(a)
        for a in await conn.fetch(
            "SELECT attempt, started_at, status_code, latency_ms, error"
            " FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
            delivery_id,
        )
    )
    return _delivery(row, attempts)


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


log = get_logger("modelreg.events.webhooks")

# Rows sealed per statement at start-up: one short transaction each.
SEAL_BATCH = 200
_CREATE_WEBHOOK = "CreateWebhook"


def _idempotency_aad(request_id: str) -> str:
    return f"idempotency_keys/{request_id}"


class SecretUnavailable(FailedPrecondition):
    """A webhook's secret cannot be opened with the configured keys. The message names the key
    id and the setting, never a secret."""

    def __init__(self, webhook_id: str, problem: UnknownKeyId | SealedSecretInvalid) -> None:
        if isinstance(problem, UnknownKeyId):
            message = (
                f"the signing secret of webhooks/{webhook_id} is sealed under encryption key "
                f"{problem.kid!r}, which this server is not configured with "
                "(MODELREG_EVENTS_SECRET_KEYS / MODELREG_EVENTS_SECRET_KEYS_FILE)"
            )
            meta = {"name": f"webhooks/{webhook_id}", "key_id": problem.kid}
        else:
            message = f"the sealed signing secret of webhooks/{webhook_id} does not open"
            meta = {"name": f"webhooks/{webhook_id}"}
        super().__init__(message, metadata=meta)


def _open_secret(
    ring: KeyRing, webhook_id: str, clear: str | None, box: bytes | None
) -> str | None:
    """A secret from its row: a clear value (written before sealing, or by a replica of the
    previous release) is newer than any sealed one, since sealing always empties it."""
    if clear is not None:
        return clear
    if box is None:
        return None
    try:
        return ring.open_text(bytes(box), webhook_id)
    except (UnknownKeyId, SealedSecretInvalid) as exc:
        log.error(
            "webhook.secret_unavailable",
            webhook=webhook_id,
            key_id=getattr(exc, "kid", ""),
            error=str(exc),
        )
        raise SecretUnavailable(webhook_id, exc) from None


def _valid_secrets(ring: KeyRing, row: asyncpg.Record) -> tuple[str, ...]:
    """(current, previous while its overlap lasts) from a row with `webhook_id`, `secret`,
    `secret_box`, `previous_secret`, `previous_secret_box` (the last two already NULL when the
    overlap is over)."""
    webhook_id = row["webhook_id"]
    current = _open_secret(ring, webhook_id, row["secret"], row["secret_box"])
    previous = _open_secret(ring, webhook_id, row["previous_secret"], row["previous_secret_box"])
    return tuple(s for s in (current, previous) if s)


class WebhookStore:
    def __init__(self, pool: asyncpg.Pool[Any], ring: KeyRing) -> None:
        self._pool = pool
        self._ring = ring

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
                    return self._open_response(idempotency.request_id, saved)
            count = await conn.fetchval("SELECT count(*) FROM webhooks")
            if count >= max_webhooks:
                raise LimitExceeded(
                    f"at most {max_webhooks} webhooks", limit=f"max_webhooks={max_webhooks}"
                )
            try:
                row = await conn.fetchrow(
                    f"""
                    INSERT INTO webhooks (id, url, event_types, models, state, description,
                                          secret_box)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    RETURNING {_WEBHOOK_COLUMNS}
                    """,
                    webhook.id,
                    webhook.url,
                    list(webhook.event_types),
                    list(webhook.models),
                    webhook.state,
                    webhook.description,
                    self._ring.seal_text(secret, webhook.id),
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
                        # The saved response holds the secret: sealed like the row.
                        self._ring.seal(
                            idempotency.render(created, secret),
                            _idempotency_aad(idempotency.request_id),
                        ),
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
        """Make `secret` current and keep the current one valid for the overlap; both are
        sealed under the first key of the ring, so rotating also re-seals."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id AS webhook_id, secret, secret_box FROM webhooks WHERE id = $1"
                " FOR UPDATE",
                webhook_id,
            )
            if row is None:
                raise NotFound(f"webhooks/{webhook_id}", kind="webhook")
            current = _open_secret(self._ring, webhook_id, row["secret"], row["secret_box"])
            row = await conn.fetchrow(
                f"""
                UPDATE webhooks SET
                    previous_secret = NULL,
                    previous_secret_box = $4,
                    previous_secret_expires_at = now() + make_interval(secs => $3),
                    secret = NULL,
                    secret_box = $2,
                    revision = revision + 1,
                    updated_at = now()
                WHERE id = $1
                RETURNING {_WEBHOOK_COLUMNS}
                """,
                webhook_id,
                self._ring.seal_text(secret, webhook_id),
                overlap_seconds,
                self._ring.seal_text(current, webhook_id) if current else None,
            )
        assert row is not None
        return _webhook(row)

    async def signing_secrets(self, webhook_id: str) -> tuple[str, tuple[str, ...]]:
        row = await self._pool.fetchrow(
            "SELECT id AS webhook_id, url, secret, secret_box,"
            " CASE WHEN previous_secret_expires_at > now() THEN previous_secret END"
            " AS previous_secret,"
            " CASE WHEN previous_secret_expires_at > now() THEN previous_secret_box END"
            " AS previous_secret_box"
            " FROM webhooks WHERE id = $1",
            webhook_id,
        )
        if row is None:
            raise NotFound(f"webhooks/{webhook_id}", kind="webhook")
        return row["url"], _valid_secrets(self._ring, row)

    def _open_response(self, request_id: str, saved: bytes) -> bytes:
        if not is_sealed(saved):
            return saved  # saved before sealing and not sealed yet: see seal_clear_secrets
        try:
            return self._ring.open(saved, _idempotency_aad(request_id))
        except (UnknownKeyId, SealedSecretInvalid) as exc:
            log.error(
                "webhook.saved_response_unavailable",
                key_id=getattr(exc, "kid", ""),
                error=str(exc),
            )
            raise FailedPrecondition(
                "the saved response of this request_id cannot be opened with the configured "
                "encryption keys"
                + (f" (key {exc.kid!r} is missing)" if isinstance(exc, UnknownKeyId) else ""),
                metadata={"key_id": exc.kid} if isinstance(exc, UnknownKeyId) else None,
            ) from None

    # -- sealing at rest -----------------------------------------------------------------

    async def seal_clear_secrets(self, *, batch: int = SEAL_BATCH) -> int:
        """Seal the webhook secrets and saved CreateWebhook responses still stored in clear
        (rows from before migration 0006), emptying the clear columns. Idempotent; safe with
        several replicas starting at once (rows are claimed with SKIP LOCKED). Returns how
        many rows were sealed."""
        sealed = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "SELECT id, secret, previous_secret, secret_box, previous_secret_box"
                    " FROM webhooks WHERE secret IS NOT NULL OR previous_secret IS NOT NULL"
                    " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                    batch,
                )
                if not rows:
                    break
                ids, boxes, previous_boxes = [], [], []
                for r in rows:
                    ids.append(r["id"])
                    boxes.append(
                        self._ring.seal_text(r["secret"], r["id"])
                        if r["secret"] is not None
                        else r["secret_box"]
                    )
                    previous_boxes.append(
                        self._ring.seal_text(r["previous_secret"], r["id"])
                        if r["previous_secret"] is not None
                        else r["previous_secret_box"]
                    )
                await conn.execute(
                    """
                    UPDATE webhooks w SET secret = NULL, previous_secret = NULL,
                        secret_box = s.box, previous_secret_box = s.previous_box
                    FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS s(id, box, previous_box)
                    WHERE w.id = s.id
                    """,
                    ids,
                    boxes,
                    previous_boxes,
                )
                sealed += len(rows)
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "SELECT request_id, response FROM idempotency_keys"
                    " WHERE method = $1 AND substring(response FROM 1 FOR 1) <> $3"
                    " ORDER BY request_id LIMIT $2 FOR UPDATE SKIP LOCKED",
                    _CREATE_WEBHOOK,
                    batch,
                    SEALED_PREFIX,
                )
                if not rows:
                    break
                await conn.execute(
                    """
                    UPDATE idempotency_keys k SET response = s.response
                    FROM unnest($1::text[], $2::bytea[]) AS s(request_id, response)
                    WHERE k.request_id = s.request_id
                    """,
                    [r["request_id"] for r in rows],
                    [
                        self._ring.seal(bytes(r["response"]), _idempotency_aad(r["request_id"]))
                        for r in rows
                    ],
                )
                sealed += len(rows)
        return sealed

    async def sealing_key_ids(self) -> list[str]:
        """Every key id some stored secret or saved response is sealed under."""
        rows = await self._pool.fetch(
            """
            SELECT secret_box AS box FROM webhooks WHERE secret_box IS NOT NULL
            UNION ALL
            SELECT previous_secret_box FROM webhooks WHERE previous_secret_box IS NOT NULL
            UNION ALL
            SELECT response FROM idempotency_keys WHERE method = $1
            """,
            _CREATE_WEBHOOK,
        )
        kids: set[str] = set()
        for row in rows:
            box = bytes(row["box"])
            # Saved responses from before sealing are not sealed; a malformed value is
            # reported when it is opened.
            if is_sealed(box):
                with contextlib.suppress(SealedSecretInvalid):
                    kids.add(key_id(box))
        return sorted(kids)

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

    async def redeliver(self, webhook_id: str, event_id: uuid.UUID) -> Delivery:
        """Make the (webhook, event) delivery PENDING and due now, creating it if needed; the
        delivery as this call left it (a worker may take it the moment this commits)."""
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
            return await _read_delivery(conn, delivery_id)

    async def claim(self, limit: int, lease_seconds: float) -> list[DeliveryJob]:
        """Claim due deliveries for `lease_seconds`. No transaction stays open during the
        HTTP call: the lease (next_attempt_at pushed forward) is the claim, so a worker that
        dies mid-attempt hands the row back when the lease runs out."""
        rows = await self._pool.fetch(
            _CLAIM_DELIVERIES,
            limit,
            lease_seconds,
        )
        return [self._job(r) for r in rows]

    def _job(self, r: asyncpg.Record) -> DeliveryJob:
        # A secret that does not open fails this delivery's attempt (recorded, retried, then
        # dead-lettered), not the claim: the other webhooks' deliveries go on.
        secret_error = ""
        try:
            secrets = _valid_secrets(self._ring, r)
        except SecretUnavailable as exc:
            secrets, secret_error = (), str(exc)
        return DeliveryJob(
            delivery_id=r["delivery_id"],
            webhook_id=r["webhook_id"],
            url=r["url"],
            secrets=secrets,
            attempt=r["attempt_count"],
            round_attempt=r["attempt_count"] - r["round_start"],
            event=record(r),
            secret_error=secret_error,
        )

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
        await self._pool.execute(
            _RECORD_ATTEMPT,
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
