"""Model versions in PostgreSQL, with gapless per-model numbering."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

import asyncpg

from modelreg_common.context import current_call, current_principal
from modelreg_common.filters import Field, FieldType, MapField
from modelreg_common.outbox import NOTIFY_CHANNEL
from modelreg_common.page_tokens import PageTokens
from modelreg_common.telemetry import inject_trace_context
from modelreg_metadata.domain.models import (
    ListQuery,
    ModelVersion,
    ModelVersionDraft,
    Page,
    Signature,
    SignatureField,
    VersionState,
)
from modelreg_metadata.store.paging import Listing, fetch_page

_COLUMNS = (
    "v.model_name, v.version, v.state, v.run, v.description, v.source, v.model_format,"
    " v.framework, v.signature, v.tags, v.artifact_digest, v.artifact_file_count,"
    " v.artifact_size_bytes, v.status_message, v.created_by, v.create_time, v.update_time,"
    " v.revision"
)

# Numbering, version, tags, signature, lineage edge, outbox row and NOTIFY in one statement
# (see `ModelVersions.create`).
_CREATE = f"""
WITH m AS (
    UPDATE registered_models SET last_version = last_version + 1
    WHERE name = $1 AND ($2 = '' OR EXISTS (SELECT 1 FROM runs r
        WHERE r.experiment_name = $15 AND r.run_id = $16))
    RETURNING id, name, last_version
), v AS (
    INSERT INTO model_versions (model_id, model_name, version, state, run,
        description, source, model_format, framework, signature, tags, created_by)
    SELECT m.id, m.name, m.last_version, 'PENDING_REGISTRATION', $2, $3, $4, $5,
        $6, $7, $8, $9 FROM m
    RETURNING *
), t AS (
    INSERT INTO model_version_tags (version_id, key, value)
    SELECT v.id, x.key, x.value FROM v, unnest($10::text[], $11::text[]) x(key, value)
), s AS (
    INSERT INTO model_version_signature_fields (version_id, kind, name, type)
    SELECT v.id, x.kind, x.name, x.type
    FROM v, unnest($12::text[], $13::text[], $14::text[]) x(kind, name, type)
), e AS (
    INSERT INTO lineage_edges (source, target, type)
    SELECT v.run, 'models/' || v.model_name || '/versions/' || v.version, 'OUTPUT'
    FROM v WHERE v.run <> ''
    ON CONFLICT DO NOTHING
), o AS (
    INSERT INTO outbox
        (id, type, subject, actor, request_id, data, trace_context, peer)
    SELECT $17, 'model_version.created',
        'models/' || v.model_name || '/versions/' || v.version, $18, $19,
        $20::jsonb || jsonb_build_object(
            'model', 'models/' || v.model_name, 'version', v.version),
        $21, $23
    FROM v
), n AS (
    SELECT pg_notify($22, current_schema()) FROM v
)
SELECT {_COLUMNS}, (SELECT count(*) FROM n) AS notified FROM v
"""

# Parsed on every new pooled connection: the create is W1's and W5's hot path.
WARM_STATEMENTS = (_CREATE,)


def _signature_filter(kind: str) -> MapField:
    return MapField(
        "EXISTS (SELECT 1 FROM model_version_signature_fields s WHERE s.version_id = v.id"
        f" AND s.kind = '{kind}' AND s.name = {{key}} AND {{cond}})",
        "s.type",
    )


LISTING = Listing(
    kind="model_versions",
    columns=_COLUMNS,
    source="model_versions v",
    fields={
        "name": Field("v.model_name"),
        "model": Field("v.model_name"),
        "version": Field("v.version", FieldType.INTEGER),
        "state": Field(
            "v.state",
            FieldType.ENUM,
            enum_values={s.value: s.value for s in VersionState}
            | {f"MODEL_VERSION_STATE_{s.value}": s.value for s in VersionState},
        ),
        "status": Field(
            "v.state",
            FieldType.ENUM,
            enum_values={s.value: s.value for s in VersionState}
            | {f"MODEL_VERSION_STATE_{s.value}": s.value for s in VersionState},
        ),
        "run": Field("v.run"),
        # The {run} id of the source run's name (experiments/{e}/runs/{run}).
        "run_id": Field("split_part(v.run, '/', 4)"),
        "source": Field("v.source"),
        "description": Field("v.description"),
        "model_format": Field("v.model_format"),
        "framework": Field("v.framework"),
        "artifact_digest": Field("v.artifact_digest"),
        "created_by": Field("v.created_by"),
        "create_time": Field("v.create_time", FieldType.TIMESTAMP),
        "update_time": Field("v.update_time", FieldType.TIMESTAMP),
        "tags": MapField(
            "EXISTS (SELECT 1 FROM model_version_tags t"
            " WHERE t.version_id = v.id AND t.key = {key} AND {cond})",
            "t.value",
        ),
        "signature.inputs": _signature_filter("inputs"),
        "signature.outputs": _signature_filter("outputs"),
        "signature.params": _signature_filter("params"),
    },
    sortable={
        "name": ("v.model_name", FieldType.STRING),
        "version": ("v.version", FieldType.INTEGER),
        "create_time": ("v.create_time", FieldType.TIMESTAMP),
        "update_time": ("v.update_time", FieldType.TIMESTAMP),
    },
    default_order="name, version",
    tie_breakers=[
        ("name", "v.model_name", FieldType.STRING),
        ("version", "v.version", FieldType.INTEGER),
    ],
)


def signature_to_json(signature: Signature) -> dict[str, Any]:
    def fields(items: tuple[SignatureField, ...]) -> list[dict[str, Any]]:
        return [
            {
                "name": f.name,
                "type": f.type,
                "shape": list(f.shape),
                "optional": f.optional,
                "default_value": f.default_value,
            }
            for f in items
        ]

    return {
        "inputs": fields(signature.inputs),
        "outputs": fields(signature.outputs),
        "params": fields(signature.params),
    }


def signature_from_json(data: dict[str, Any]) -> Signature:
    def fields(kind: str) -> tuple[SignatureField, ...]:
        return tuple(
            SignatureField(
                name=f["name"],
                type=f["type"],
                shape=tuple(f.get("shape", ())),
                optional=bool(f.get("optional", False)),
                default_value=f.get("default_value", ""),
            )
            for f in data.get(kind, ())
        )

    return Signature(fields("inputs"), fields("outputs"), fields("params"))


def _signature_rows(signature: Signature) -> tuple[list[str], list[str], list[str]]:
    kinds, names, types = [], [], []
    for kind, items in (
        ("inputs", signature.inputs),
        ("outputs", signature.outputs),
        ("params", signature.params),
    ):
        for f in items:
            kinds.append(kind)
            names.append(f.name)
            types.append(f.type)
    return kinds, names, types


def to_version(row: asyncpg.Record) -> ModelVersion:
    return ModelVersion(
        model=row["model_name"],
        version=row["version"],
        state=VersionState(row["state"]),
        run=row["run"],
        description=row["description"],
        source=row["source"],
        model_format=row["model_format"],
        framework=row["framework"],
        signature=signature_from_json(row["signature"]),
        tags=dict(row["tags"]),
        artifact_digest=row["artifact_digest"],
        artifact_file_count=row["artifact_file_count"],
        artifact_size_bytes=row["artifact_size_bytes"],
        status_message=row["status_message"],
        created_by=row["created_by"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        revision=row["revision"],
    )


class ModelVersions:
    def __init__(self, conn: asyncpg.Connection[Any], tokens: PageTokens) -> None:
        self._conn = conn
        self._tokens = tokens

    async def get(
        self, model: str, version: int, *, for_update: bool = False
    ) -> ModelVersion | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM model_versions v"
            f" WHERE v.model_name = $1 AND v.version = $2{lock}",
            model,
            version,
        )
        return None if row is None else to_version(row)

    async def create(
        self,
        model: str,
        draft: ModelVersionDraft,
        created_by: str,
        event_data: dict[str, Any],
    ) -> tuple[ModelVersion | None, bool]:
        """Allocates the next number and inserts the version in one statement: the counter's
        row lock serialises creates of one model, and a rollback returns the number. Returns
        (None, run_exists) when nothing was created: the model or the source run is missing.
        The statement is complete on its own, so it may run as its own transaction.

        The `model_version.created` outbox row (with `event_data` plus model and version) is
        written by the same statement: the model's row lock is held until commit, so every
        round trip saved after the UPDATE is throughput on a busy model."""
        call = current_call()
        kinds, names, types = _signature_rows(draft.signature)
        run_parts = draft.run.split("/")
        experiment, run_id = (run_parts[1], run_parts[3]) if draft.run else ("", "")
        row = await self._conn.fetchrow(
            _CREATE,
            model,
            draft.run,
            draft.description,
            draft.source,
            draft.model_format,
            draft.framework,
            signature_to_json(draft.signature),
            dict(draft.tags),
            created_by,
            list(draft.tags),
            list(draft.tags.values()),
            kinds,
            names,
            types,
            experiment,
            run_id,
            uuid.uuid4(),
            current_principal().subject,
            call.request_id if call is not None else "",
            event_data,
            inject_trace_context(),
            NOTIFY_CHANNEL,
            call.peer if call is not None else "",
        )
        if row is not None:
            return to_version(row), True
        # Nothing was written: say why (only on this error path).
        run_exists = not draft.run or bool(
            await self._conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE experiment_name = $1 AND run_id = $2)",
                experiment,
                run_id,
            )
        )
        return None, run_exists

    async def save(
        self, version: ModelVersion, *, tags_changed: bool, signature_changed: bool
    ) -> ModelVersion:
        row = await self._conn.fetchrow(
            f"""
            UPDATE model_versions v SET state = $3, run = $4, description = $5, source = $6,
                model_format = $7, framework = $8, signature = $9, tags = $10,
                artifact_digest = $11, artifact_file_count = $12, artifact_size_bytes = $13,
                status_message = $14, update_time = now(), revision = revision + 1
            WHERE v.model_name = $1 AND v.version = $2
            RETURNING {_COLUMNS}, v.id
            """,
            version.model,
            version.version,
            version.state.value,
            version.run,
            version.description,
            version.source,
            version.model_format,
            version.framework,
            signature_to_json(version.signature),
            dict(version.tags),
            version.artifact_digest,
            version.artifact_file_count,
            version.artifact_size_bytes,
            version.status_message,
        )
        assert row is not None
        if tags_changed:
            await self._conn.execute(
                "DELETE FROM model_version_tags WHERE version_id = $1", row["id"]
            )
            await self._conn.execute(
                "INSERT INTO model_version_tags (version_id, key, value)"
                " SELECT $1, x.key, x.value FROM unnest($2::text[], $3::text[]) x(key, value)",
                row["id"],
                list(version.tags),
                list(version.tags.values()),
            )
        if signature_changed:
            kinds, names, types = _signature_rows(version.signature)
            await self._conn.execute(
                "DELETE FROM model_version_signature_fields WHERE version_id = $1", row["id"]
            )
            await self._conn.execute(
                "INSERT INTO model_version_signature_fields (version_id, kind, name, type)"
                " SELECT $1, x.kind, x.name, x.type"
                " FROM unnest($2::text[], $3::text[], $4::text[]) x(kind, name, type)",
                row["id"],
                kinds,
                names,
                types,
            )
        return to_version(row)

    async def set_run_edge(self, version: ModelVersion, old_run: str) -> None:
        """Keeps the run -> version lineage edge in step with the version's source run."""
        name = version.resource_name
        if old_run:
            await self._conn.execute(
                "DELETE FROM lineage_edges WHERE source = $1 AND target = $2 AND type = 'OUTPUT'",
                old_run,
                name,
            )
        if version.run:
            await self._conn.execute(
                "INSERT INTO lineage_edges (source, target, type) VALUES ($1, $2, 'OUTPUT')"
                " ON CONFLICT DO NOTHING",
                version.run,
                name,
            )

    async def delete(self, model: str, version: int) -> bool:
        name = f"models/{model}/versions/{version}"
        await self._conn.execute("DELETE FROM lineage_edges WHERE source = $1 OR target = $1", name)
        result = await self._conn.execute(
            "DELETE FROM model_versions WHERE model_name = $1 AND version = $2", model, version
        )
        return result != "DELETE 0"

    async def search(
        self, model: str | None, query: ListQuery, *, readable: Collection[str] | None = None
    ) -> Page[ModelVersion]:
        scope = [("v.model_name = {}", model)] if model is not None else []
        rows, token = await fetch_page(
            self._conn,
            self._tokens,
            LISTING,
            query,
            scope=scope,
            readable=("v.model_name", readable),
        )
        return Page(tuple(to_version(r) for r in rows), token)
