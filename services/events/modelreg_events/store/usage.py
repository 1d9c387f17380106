"""Usage counts in PostgreSQL: one upsert per batch, keyset pages newest hour first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from modelreg_common import filters as grammar
from modelreg_events.domain.models import UsageKey, UsageParent, UsageRecord

# The filterable fields; SQL written here, never taken from the filter text.
USAGE_FIELDS: grammar.Fields = {
    "principal": grammar.Field("principal"),
    "kind": grammar.Field(
        "kind",
        grammar.FieldType.ENUM,
        {"DOWNLOAD": "DOWNLOAD", "ALIAS_RESOLUTION": "ALIAS_RESOLUTION"},
    ),
    "hour_start_time": grammar.Field("hour_start", grammar.FieldType.TIMESTAMP),
}

_FORGET_CHUNK = 5000


def _record(row: asyncpg.Record) -> UsageRecord:
    return UsageRecord(
        model=row["model"],
        version=row["version"],
        principal=row["principal"],
        kind=row["kind"],
        hour_start=row["hour_start"],
        count=row["count"],
    )


class UsageStore:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def add(self, batch_id: str, records: Sequence[UsageRecord]) -> bool:
        # One statement: the batch id's insert gates the counts' upsert, so a batch is applied
        # wholly or (seen before, or a concurrent twin still committing) not at all. Rows of
        # the same key inside one batch are summed first: an upsert may touch a row only once.
        applied = await self._pool.fetchval(
            """
            WITH batch AS (
                INSERT INTO usage_batches (batch_id) VALUES ($1)
                ON CONFLICT (batch_id) DO NOTHING
                RETURNING batch_id
            ), added AS (
                INSERT INTO usage_counts AS u (model, version, principal, kind, hour_start, count)
                SELECT r.model, r.version, r.principal, r.kind, r.hour_start, sum(r.n)::bigint
                FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[],
                            $6::timestamptz[], $7::bigint[])
                     AS r(model, version, principal, kind, hour_start, n)
                CROSS JOIN batch
                GROUP BY r.model, r.version, r.principal, r.kind, r.hour_start
                ON CONFLICT (model, version, principal, kind, hour_start)
                DO UPDATE SET count = u.count + excluded.count
                RETURNING 1
            )
            SELECT EXISTS (SELECT 1 FROM batch)
            """,
            batch_id,
            [r.model for r in records],
            [r.version for r in records],
            [r.principal for r in records],
            [r.kind for r in records],
            [r.hour_start for r in records],
            [r.count for r in records],
        )
        return bool(applied)

    async def page(
        self,
        parent: UsageParent,
        flt: grammar.Node | None,
        *,
        after: UsageKey | None,
        limit: int,
    ) -> list[UsageRecord]:
        params = grammar.SqlParams([parent.model])
        clauses = ["model = $1", grammar.compile_filter(flt, USAGE_FIELDS, params)]
        if parent.version is not None:
            clauses.append(f"version = {params.add(parent.version)}")
        if after is not None:
            key = (
                f"({params.add(after.hour_start)}::timestamptz, {params.add(after.version)}"
                f"::bigint, {params.add(after.principal)}::text, {params.add(after.kind)}::text)"
            )
            clauses.append(f"(hour_start, version, principal, kind) < {key}")
        rows = await self._pool.fetch(
            "SELECT model, version, principal, kind, hour_start, count FROM usage_counts"
            f" WHERE {' AND '.join(clauses)}"
            " ORDER BY hour_start DESC, version DESC, principal DESC, kind DESC"
            f" LIMIT {params.add(limit)}",
            *params.values,
        )
        return [_record(r) for r in rows]

    async def forget_batches(self, *, before: datetime) -> int:
        total = 0
        while True:
            # In chunks, so a long backlog never holds one long delete.
            status = await self._pool.execute(
                """
                DELETE FROM usage_batches WHERE batch_id IN (
                    SELECT batch_id FROM usage_batches WHERE applied_at < $1 LIMIT $2)
                """,
                before,
                _FORGET_CHUNK,
            )
            deleted = int(status.rsplit(" ", 1)[-1])
            total += deleted
            if deleted < _FORGET_CHUNK:
                return total
