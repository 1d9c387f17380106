"""Numbered SQL migrations per service schema, applied under an advisory lock.

Files are `NNNN_name.sql` in a package (`modelreg_metadata.store.migrations`). The runtime's own
migrations (outbox, idempotency keys) are applied to every service schema first. Applied files
are recorded with a checksum: a file edited after it was applied stops start-up with a clear
error, as does a database that knows a migration this build does not.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

from modelreg_common.logs import get_logger

log = get_logger("modelreg.migrations")

RUNTIME_SOURCE = "runtime"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    source: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.source}/{self.version:04d}_{self.name}"


def load_migrations(package: str, source: str) -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        found.append(Migration(source, int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations of {source} must be numbered 1..n, got {versions}")
    return found


def runtime_migrations() -> list[Migration]:
    return load_migrations("modelreg_common.runtime_migrations", RUNTIME_SOURCE)


async def migrate(
    conn: asyncpg.Connection[Any], schema: str, migrations: list[Migration]
) -> list[str]:
    """Bring `schema` up to date; returns the labels applied. Safe to run from many replicas
    at once: the advisory lock serialises them and the later ones find nothing to do."""
    if not _SCHEMA.match(schema):
        raise MigrationError(f"bad schema name {schema!r}")
    all_migrations = [*runtime_migrations(), *migrations]
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"modelreg.migrate.{schema}")
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (
                    source text NOT NULL,
                    version integer NOT NULL,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (source, version))"""
        )
        rows = await conn.fetch(
            f'SELECT source, version, name, checksum FROM "{schema}".schema_migrations'
        )
        done = {(r["source"], r["version"]): r for r in rows}
        known = {(m.source, m.version) for m in all_migrations}
        unknown = sorted(k for k in done if k not in known)
        if unknown:
            raise MigrationError(
                f"schema {schema} has migrations this build does not know: {unknown}; "
                "is an older modelreg running against a newer database?"
            )
        for migration in all_migrations:
            row = done.get((migration.source, migration.version))
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.label} in schema {schema} was edited after it "
                        "was applied (checksum differs); add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                await conn.execute(migration.sql)
                await conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (source, version, name, checksum)'
                    " VALUES ($1, $2, $3, $4)",
                    migration.source,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied.append(migration.label)
            log.info("migration.applied", schema=schema, migration=migration.label)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"modelreg.migrate.{schema}")
    return applied


async def migrate_dsn(dsn: str, schema: str, migrations: list[Migration]) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, schema, migrations)
    finally:
        await conn.close()
