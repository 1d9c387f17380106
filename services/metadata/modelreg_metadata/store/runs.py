"""Runs, their params, tags, inputs and metrics in PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from modelreg_common.errors import AlreadyExists
from modelreg_common.filters import (
    Field,
    FieldType,
    MapField,
    SqlParams,
    encode_keyset,
    keyset_sql,
    parse_order_by,
)
from modelreg_common.page_tokens import PageTokens, fingerprint, page_size
from modelreg_metadata.domain.models import (
    CodeVersion,
    DatasetInput,
    ListQuery,
    MetricPoint,
    Page,
    Run,
    RunDraft,
    RunStatus,
)
from modelreg_metadata.store.experiments import jsonb_map
from modelreg_metadata.store.paging import Listing, fetch_page

# Latest metrics ride along as two arrays: float8[] keeps NaN and +/-Inf, which jsonb cannot.
_COLUMNS = (
    "r.id, r.experiment_name, r.run_id, r.display_name, r.status, r.start_time, r.end_time,"
    " r.params, r.tags, r.inputs, r.code, r.created_by, r.create_time, r.update_time,"
    " r.revision,"
    " ARRAY(SELECT lm.key FROM run_latest_metrics lm WHERE lm.run_pk = r.id ORDER BY lm.key)"
    " AS metric_keys,"
    " ARRAY(SELECT lm.value FROM run_latest_metrics lm WHERE lm.run_pk = r.id ORDER BY lm.key)"
    " AS metric_values"
)

LISTING = Listing(
    kind="runs",
    columns=_COLUMNS,
    source="runs r",
    fields={
        "name": Field("r.run_id"),
        "run_id": Field("r.run_id"),
        "experiment": Field("r.experiment_name"),
        "display_name": Field("r.display_name"),
        "status": Field(
            "r.status",
            FieldType.ENUM,
            enum_values={s.value: s.value for s in RunStatus}
            | {f"RUN_STATUS_{s.value}": s.value for s in RunStatus},
        ),
        "created_by": Field("r.created_by"),
        "start_time": Field("r.start_time", FieldType.TIMESTAMP),
        "end_time": Field("r.end_time", FieldType.TIMESTAMP, nullable=True),
        "create_time": Field("r.create_time", FieldType.TIMESTAMP),
        "update_time": Field("r.update_time", FieldType.TIMESTAMP),
        "params": jsonb_map("r.params"),
        "tags": jsonb_map("r.tags"),
        "metrics": MapField(
            "EXISTS (SELECT 1 FROM run_latest_metrics lm"
            " WHERE lm.run_pk = r.id AND lm.key = {key} AND {cond})",
            "lm.value",
            FieldType.NUMBER,
        ),
    },
    sortable={
        "name": ("r.run_id", FieldType.STRING),
        "display_name": ("r.display_name", FieldType.STRING),
        "status": ("r.status", FieldType.STRING),
        "start_time": ("r.start_time", FieldType.TIMESTAMP),
        "create_time": ("r.create_time", FieldType.TIMESTAMP),
        "update_time": ("r.update_time", FieldType.TIMESTAMP),
    },
    default_order="create_time desc",
    tie_breakers=[
        ("experiment", "r.experiment_name", FieldType.STRING),
        ("name", "r.run_id", FieldType.STRING),
    ],
)


def _inputs_json(inputs: Sequence[DatasetInput]) -> list[dict[str, str]]:
    return [
        {
            "name": d.name,
            "digest": d.digest,
            "source_uri": d.source_uri,
            "schema": d.schema,
            "context": d.context,
            "lineage_node": d.lineage_node,
        }
        for d in inputs
    ]


def _code_json(code: CodeVersion) -> dict[str, str]:
    return {
        "repository_url": code.repository_url,
        "commit": code.commit,
        "entry_point": code.entry_point,
    }


def to_run(row: asyncpg.Record) -> Run:
    code = row["code"] or {}
    return Run(
        experiment=row["experiment_name"],
        run_id=row["run_id"],
        display_name=row["display_name"],
        status=RunStatus(row["status"]),
        start_time=row["start_time"],
        end_time=row["end_time"],
        params=dict(row["params"]),
        latest_metrics=dict(zip(row["metric_keys"], row["metric_values"], strict=True)),
        tags=dict(row["tags"]),
        inputs=tuple(DatasetInput(**d) for d in row["inputs"]),
        code=CodeVersion(
            repository_url=code.get("repository_url", ""),
            commit=code.get("commit", ""),
            entry_point=code.get("entry_point", ""),
        ),
        created_by=row["created_by"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        revision=row["revision"],
    )


_HISTORY_SORT = {
    "step": ("step", FieldType.INTEGER),
    "timestamp": ("timestamp", FieldType.TIMESTAMP),
    "seq": ("seq", FieldType.INTEGER),
}


class Runs:
    def __init__(self, conn: asyncpg.Connection[Any], tokens: PageTokens) -> None:
        self._conn = conn
        self._tokens = tokens

    async def get(self, experiment: str, run_id: str, *, for_update: bool = False) -> Run | None:
        lock = " FOR UPDATE OF r" if for_update else ""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM runs r WHERE r.experiment_name = $1 AND r.run_id = $2{lock}",
            experiment,
            run_id,
        )
        return None if row is None else to_run(row)

    async def create(
        self, experiment: str, run_id: str, draft: RunDraft, status: RunStatus, created_by: str
    ) -> Run | None:
        """None when the experiment does not exist."""
        try:
            row = await self._conn.fetchrow(
                """
                WITH r AS (
                    INSERT INTO runs (experiment_id, experiment_name, run_id, display_name,
                        status, start_time, end_time, params, tags, inputs, code, created_by)
                    SELECT e.id, e.name, $2, $3, $4, COALESCE($5, now()), $6, $7, $8, $9, $10,
                        $11
                    FROM experiments e WHERE e.name = $1
                    RETURNING id
                )
                SELECT id FROM r
                """,
                experiment,
                run_id,
                draft.display_name,
                status.value,
                draft.start_time,
                draft.end_time,
                dict(draft.params),
                dict(draft.tags),
                _inputs_json(draft.inputs),
                _code_json(draft.code),
                created_by,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"experiments/{experiment}/runs/{run_id}", kind="run") from None
        if row is None:
            return None
        got = await self.get(experiment, run_id)
        assert got is not None
        return got

    async def save(self, run: Run) -> Run:
        await self._conn.execute(
            """
            UPDATE runs SET display_name = $3, status = $4, start_time = $5, end_time = $6,
                params = $7, tags = $8, inputs = $9, code = $10, update_time = now(),
                revision = revision + 1
            WHERE experiment_name = $1 AND run_id = $2
            """,
            run.experiment,
            run.run_id,
            run.display_name,
            run.status.value,
            run.start_time,
            run.end_time,
            dict(run.params),
            dict(run.tags),
            _inputs_json(run.inputs),
            _code_json(run.code),
        )
        got = await self.get(run.experiment, run.run_id)
        assert got is not None
        return got

    async def log_metrics(
        self, experiment: str, run_id: str, metrics: Sequence[MetricPoint]
    ) -> None:
        if not metrics:
            return
        now = datetime.now(UTC)
        keys = [m.key for m in metrics]
        values = [m.value for m in metrics]
        steps = [m.step for m in metrics]
        stamps = [m.timestamp or now for m in metrics]
        await self._conn.execute(
            """
            WITH r AS (SELECT id FROM runs WHERE experiment_name = $1 AND run_id = $2),
            x AS (
                SELECT * FROM unnest($3::text[], $4::float8[], $5::int8[], $6::timestamptz[])
                    WITH ORDINALITY x(key, value, step, ts, ord)
            ), h AS (
                INSERT INTO run_metrics (run_pk, key, step, timestamp, value)
                SELECT r.id, x.key, x.step, x.ts, x.value FROM r, x ORDER BY x.ord
            )
            INSERT INTO run_latest_metrics AS lm (run_pk, key, value, step, timestamp)
            SELECT DISTINCT ON (x.key) r.id, x.key, x.value, x.step, x.ts
            FROM r, x ORDER BY x.key, x.step DESC, x.ts DESC, x.ord DESC
            ON CONFLICT (run_pk, key) DO UPDATE
                SET value = excluded.value, step = excluded.step, timestamp = excluded.timestamp
                WHERE (excluded.step, excluded.timestamp) >= (lm.step, lm.timestamp)
            """,
            experiment,
            run_id,
            keys,
            values,
            steps,
            stamps,
        )

    async def touch(self, experiment: str, run_id: str) -> None:
        await self._conn.execute(
            "UPDATE runs SET update_time = now(), revision = revision + 1"
            " WHERE experiment_name = $1 AND run_id = $2",
            experiment,
            run_id,
        )

    async def metric_history(
        self, experiment: str, run_id: str, key: str, page_size_requested: int, token: str
    ) -> Page[MetricPoint]:
        size = page_size(page_size_requested)
        keys = parse_order_by(
            "step, timestamp, seq", _HISTORY_SORT, default="step", tie_breakers=[]
        )
        query_id = fingerprint("metric_history", experiment, run_id, key)
        last = self._tokens.decode(token, query_id)
        params = SqlParams([experiment, run_id, key])
        where = "TRUE" if last is None else keyset_sql(keys, last, params)
        limit = params.add(size + 1)
        rows = await self._conn.fetch(
            f"""
            SELECT m.key, m.value, m.step, m.timestamp, m.seq FROM run_metrics m
            JOIN runs r ON r.id = m.run_pk
            WHERE r.experiment_name = $1 AND r.run_id = $2 AND m.key = $3 AND {where}
            ORDER BY m.step, m.timestamp, m.seq LIMIT {limit}
            """,
            *params.values,
        )
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            tail = rows[-1]
            next_token = self._tokens.encode(
                query_id, encode_keyset([tail["step"], tail["timestamp"], tail["seq"]])
            )
        points = tuple(MetricPoint(r["key"], r["value"], r["step"], r["timestamp"]) for r in rows)
        return Page(points, next_token)

    async def delete(self, experiment: str, run_id: str) -> bool:
        name = f"experiments/{experiment}/runs/{run_id}"
        result = await self._conn.execute(
            "DELETE FROM runs WHERE experiment_name = $1 AND run_id = $2", experiment, run_id
        )
        if result == "DELETE 0":
            return False
        await self._conn.execute("DELETE FROM lineage_edges WHERE source = $1 OR target = $1", name)
        return True

    async def search(self, experiment: str | None, query: ListQuery) -> Page[Run]:
        scope = [("r.experiment_name = {}", experiment)] if experiment is not None else []
        rows, token = await fetch_page(self._conn, self._tokens, LISTING, query, scope=scope)
        return Page(tuple(to_run(r) for r in rows), token)
