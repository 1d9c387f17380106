"""Registered models in PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import asyncpg

from modelreg_common.errors import AlreadyExists
from modelreg_common.filters import Field, FieldType, MapField
from modelreg_common.page_tokens import PageTokens
from modelreg_metadata.domain.models import ListQuery, Page, RegisteredModel
from modelreg_metadata.store.paging import Listing, fetch_page

_COLUMNS = (
    "m.name, m.description, m.tags, m.created_by, m.create_time, m.update_time, "
    "m.last_version, m.revision"
)

LISTING = Listing(
    kind="registered_models",
    columns=_COLUMNS,
    source="registered_models m",
    fields={
        "name": Field("m.name"),
        "description": Field("m.description"),
        "created_by": Field("m.created_by"),
        "create_time": Field("m.create_time", FieldType.TIMESTAMP),
        "update_time": Field("m.update_time", FieldType.TIMESTAMP),
        "latest_version": Field("m.last_version", FieldType.INTEGER),
        "tags": MapField(
            "EXISTS (SELECT 1 FROM registered_model_tags t"
            " WHERE t.model_id = m.id AND t.key = {key} AND {cond})",
            "t.value",
        ),
    },
    sortable={
        "name": ("m.name", FieldType.STRING),
        "create_time": ("m.create_time", FieldType.TIMESTAMP),
        "update_time": ("m.update_time", FieldType.TIMESTAMP),
        "latest_version": ("m.last_version", FieldType.INTEGER),
    },
    default_order="name",
    tie_breakers=[("name", "m.name", FieldType.STRING)],
)


def to_model(row: asyncpg.Record) -> RegisteredModel:
    return RegisteredModel(
        name=row["name"],
        description=row["description"],
        tags=dict(row["tags"]),
        created_by=row["created_by"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        latest_version=row["last_version"],
        revision=row["revision"],
    )


class RegisteredModels:
    def __init__(self, conn: asyncpg.Connection[Any], tokens: PageTokens) -> None:
        self._conn = conn
        self._tokens = tokens

    async def get(self, name: str, *, for_update: bool = False) -> RegisteredModel | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM registered_models m WHERE m.name = $1{lock}", name
        )
        return None if row is None else to_model(row)

    async def create(
        self, name: str, description: str, tags: Mapping[str, str], created_by: str
    ) -> RegisteredModel:
        row = await self._conn.fetchrow(
            f"""
            WITH m AS (
                INSERT INTO registered_models (name, description, tags, created_by)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (name) DO NOTHING
                RETURNING *
            ), t AS (
                INSERT INTO registered_model_tags (model_id, key, value)
                SELECT m.id, x.key, x.value FROM m, unnest($5::text[], $6::text[]) x(key, value)
            )
            SELECT {_COLUMNS} FROM m
            """,
            name,
            description,
            dict(tags),
            created_by,
            list(tags),
            list(tags.values()),
        )
        if row is None:
            raise AlreadyExists(f"models/{name}", kind="registered model")
        return to_model(row)

    async def save(self, model: RegisteredModel, *, tags_changed: bool) -> RegisteredModel:
        row = await self._conn.fetchrow(
            f"""
            UPDATE registered_models m SET description = $2, tags = $3, update_time = now(),
                revision = revision + 1
            WHERE m.name = $1 RETURNING {_COLUMNS}, m.id
            """,
            model.name,
            model.description,
            dict(model.tags),
        )
        assert row is not None
        if tags_changed:
            await self._conn.execute(
                "DELETE FROM registered_model_tags WHERE model_id = $1", row["id"]
            )
            await self._conn.execute(
                "INSERT INTO registered_model_tags (model_id, key, value)"
                " SELECT $1, x.key, x.value FROM unnest($2::text[], $3::text[]) x(key, value)",
                row["id"],
                list(model.tags),
                list(model.tags.values()),
            )
        return to_model(row)

    async def rename(self, old: str, new: str) -> RegisteredModel:
        try:
            row = await self._conn.fetchrow(
                f"""
                UPDATE registered_models m SET name = $2, update_time = now(),
                    revision = revision + 1
                WHERE m.name = $1 RETURNING {_COLUMNS}
                """,
                old,
                new,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"models/{new}", kind="registered model") from None
        assert row is not None
        await self._conn.execute(
            "UPDATE model_versions SET model_name = $2 WHERE model_name = $1", old, new
        )
        # Lineage refers to versions by name; move those edges with the model.
        old_prefix, new_prefix = f"models/{old}/versions/", f"models/{new}/versions/"
        for column in ("source", "target"):
            await self._conn.execute(
                f"UPDATE lineage_edges SET {column} = $2 || substr({column}, length($1) + 1)"
                f" WHERE starts_with({column}, $1)",
                old_prefix,
                new_prefix,
            )
        return to_model(row)

    async def delete(self, name: str) -> list[int]:
        """Deletes the model with its versions; returns the deleted version numbers."""
        versions = await self._conn.fetch(
            "SELECT version FROM model_versions WHERE model_name = $1 ORDER BY version", name
        )
        prefix = f"models/{name}/versions/"
        await self._conn.execute(
            "DELETE FROM lineage_edges WHERE starts_with(source, $1) OR starts_with(target, $1)",
            prefix,
        )
        await self._conn.execute("DELETE FROM registered_models WHERE name = $1", name)
        return [r["version"] for r in versions]

    async def search(
        self, query: ListQuery, *, readable: Collection[str] | None = None
    ) -> Page[RegisteredModel]:
        rows, token = await fetch_page(
            self._conn, self._tokens, LISTING, query, readable=("m.name", readable)
        )
        return Page(tuple(to_model(r) for r in rows), token)
