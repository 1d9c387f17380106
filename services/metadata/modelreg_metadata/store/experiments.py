"""Experiments in PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from modelreg_common.errors import AlreadyExists
from modelreg_common.filters import Field, FieldType, MapField
from modelreg_common.page_tokens import PageTokens
from modelreg_metadata.domain.models import Experiment, ExperimentState, ListQuery, Page
from modelreg_metadata.store.paging import Listing, fetch_page

_COLUMNS = (
    "e.name, e.description, e.tags, e.state, e.created_by, e.create_time, e.update_time, e.revision"
)


def jsonb_map(column: str) -> MapField:
    """A `tags.<key>`-style filter over a jsonb object column of text values."""
    return MapField(
        f"EXISTS (SELECT 1 FROM jsonb_each_text({column}) j(key, value)"
        " WHERE j.key = {key} AND {cond})",
        "j.value",
    )


LISTING = Listing(
    kind="experiments",
    columns=_COLUMNS,
    source="experiments e",
    fields={
        "name": Field("e.name"),
        "description": Field("e.description"),
        "state": Field(
            "e.state",
            FieldType.ENUM,
            enum_values={s.value: s.value for s in ExperimentState}
            | {f"EXPERIMENT_STATE_{s.value}": s.value for s in ExperimentState},
        ),
        "created_by": Field("e.created_by"),
        "create_time": Field("e.create_time", FieldType.TIMESTAMP),
        "update_time": Field("e.update_time", FieldType.TIMESTAMP),
        "tags": jsonb_map("e.tags"),
    },
    sortable={
        "name": ("e.name", FieldType.STRING),
        "create_time": ("e.create_time", FieldType.TIMESTAMP),
        "update_time": ("e.update_time", FieldType.TIMESTAMP),
    },
    default_order="name",
    tie_breakers=[("name", "e.name", FieldType.STRING)],
)


def to_experiment(row: asyncpg.Record) -> Experiment:
    return Experiment(
        name=row["name"],
        description=row["description"],
        tags=dict(row["tags"]),
        state=ExperimentState(row["state"]),
        created_by=row["created_by"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        revision=row["revision"],
    )


class Experiments:
    def __init__(self, conn: asyncpg.Connection[Any], tokens: PageTokens) -> None:
        self._conn = conn
        self._tokens = tokens

    async def get(self, name: str, *, for_update: bool = False) -> Experiment | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM experiments e WHERE e.name = $1{lock}", name
        )
        return None if row is None else to_experiment(row)

    async def create(
        self, name: str, description: str, tags: Mapping[str, str], created_by: str
    ) -> Experiment:
        row = await self._conn.fetchrow(
            f"""
            INSERT INTO experiments AS e (name, description, tags, created_by)
            VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}
            """,
            name,
            description,
            dict(tags),
            created_by,
        )
        if row is None:
            raise AlreadyExists(f"experiments/{name}", kind="experiment")
        return to_experiment(row)

    async def save(self, experiment: Experiment) -> Experiment:
        row = await self._conn.fetchrow(
            f"""
            UPDATE experiments e SET description = $2, tags = $3, state = $4,
                update_time = now(), revision = revision + 1
            WHERE e.name = $1 RETURNING {_COLUMNS}
            """,
            experiment.name,
            experiment.description,
            dict(experiment.tags),
            experiment.state.value,
        )
        assert row is not None
        return to_experiment(row)

    async def search(self, query: ListQuery, *, show_deleted: bool) -> Page[Experiment]:
        extra = [] if show_deleted else ["e.state = 'ACTIVE'"]
        rows, token = await fetch_page(self._conn, self._tokens, LISTING, query, extra_where=extra)
        return Page(tuple(to_experiment(r) for r in rows), token)
