"""IAM policies in PostgreSQL: one row per policy (its revision is the etag) and one row per
(role, member) binding, indexed by member for ResolveAccess."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from modelreg_common.access import REGISTRY, Role
from modelreg_metadata.domain.models import Binding, IamPolicy


class Policies:
    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self._conn = conn

    async def get(self, resource: str, *, for_update: bool = False) -> IamPolicy:
        if for_update:
            # A policy that was never set has no row to lock; the advisory lock serialises
            # the first two writers of one resource as a row lock would.
            await self._conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 9))", resource
            )
        rows = await self._conn.fetch(
            """
            SELECT p.revision, p.update_time, p.updated_by, b.role, b.member
            FROM iam_policies p LEFT JOIN iam_bindings b ON b.resource = p.resource
            WHERE p.resource = $1
            ORDER BY b.role, b.member
            """,
            resource,
        )
        if not rows:
            return IamPolicy(resource, (), 0)
        members: dict[int, list[str]] = {}
        for row in rows:
            if row["role"] is not None:
                members.setdefault(row["role"], []).append(row["member"])
        first = rows[0]
        return IamPolicy(
            resource,
            tuple(Binding(Role(role), tuple(names)) for role, names in members.items()),
            first["revision"],
            first["update_time"],
            first["updated_by"],
        )

    async def replace(
        self, resource: str, bindings: Sequence[Binding], updated_by: str
    ) -> IamPolicy:
        row = await self._conn.fetchrow(
            """
            INSERT INTO iam_policies AS p (resource, updated_by) VALUES ($1, $2)
            ON CONFLICT (resource) DO UPDATE SET revision = p.revision + 1,
                update_time = now(), updated_by = EXCLUDED.updated_by
            RETURNING p.revision, p.update_time, p.updated_by
            """,
            resource,
            updated_by,
        )
        assert row is not None
        await self._conn.execute("DELETE FROM iam_bindings WHERE resource = $1", resource)
        roles = [int(b.role) for b in bindings for _ in b.members]
        members = [m for b in bindings for m in b.members]
        await self._conn.execute(
            "INSERT INTO iam_bindings (resource, role, member)"
            " SELECT $1, x.role, x.member FROM unnest($2::smallint[], $3::text[]) x(role, member)",
            resource,
            roles,
            members,
        )
        return IamPolicy(
            resource, tuple(bindings), row["revision"], row["update_time"], row["updated_by"]
        )

    async def move(self, old: str, new: str) -> None:
        # No model has the new name, so no policy can either; a leftover would only block
        # the rename with a key conflict.
        await self._conn.execute("DELETE FROM iam_policies WHERE resource = $1", new)
        # The bindings follow by ON UPDATE CASCADE.
        await self._conn.execute(
            "UPDATE iam_policies SET resource = $2 WHERE resource = $1", old, new
        )

    async def delete(self, resource: str) -> None:
        await self._conn.execute("DELETE FROM iam_policies WHERE resource = $1", resource)

    async def resolve(self, members: Sequence[str]) -> tuple[Role, dict[str, Role]]:
        # One statement, index-only over iam_bindings_member: this runs on every cache miss
        # of every service's authorization.
        rows = await self._conn.fetch(
            """
            WITH r AS (
                SELECT resource, max(role) AS role FROM iam_bindings
                WHERE member = ANY($1::text[]) GROUP BY resource
            )
            SELECT resource, role FROM r
            WHERE resource = $2 OR role > coalesce((SELECT role FROM r WHERE resource = $2), 0)
            """,
            list(members),
            REGISTRY,
        )
        registry_role = Role.NONE
        models: dict[str, Role] = {}
        for row in rows:
            if row["resource"] == REGISTRY:
                registry_role = Role(row["role"])
            else:
                models[row["resource"].removeprefix("models/")] = Role(row["role"])
        return registry_role, models
