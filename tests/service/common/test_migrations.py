"""Migrations: applied once, in order, under a lock; edits and unknown ones stop start-up."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import asyncpg
import pytest

from modelreg_common.migrations import Migration, MigrationError, migrate_dsn, runtime_migrations

# Not idempotent on purpose: applying either twice would fail loudly.
SLOW_CREATE = Migration(
    "demo", 1, "slow_create", "SELECT pg_sleep(0.3); CREATE TABLE things (id int);"
)
ADD_COLUMN = Migration("demo", 2, "add_column", "ALTER TABLE things ADD COLUMN name text;")


async def applied(dsn: str, schema: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT source, version FROM {schema}.schema_migrations ORDER BY source, version"
        )
    finally:
        await conn.close()
    return [(r["source"], r["version"]) for r in rows]


async def test_migrate_applies_runtime_then_service_migrations_once(empty_dsn: str) -> None:
    first = await migrate_dsn(empty_dsn, "demo", [SLOW_CREATE, ADD_COLUMN])
    second = await migrate_dsn(empty_dsn, "demo", [SLOW_CREATE, ADD_COLUMN])
    runtime = [m.label for m in runtime_migrations()]
    assert first == [*runtime, "demo/0001_slow_create", "demo/0002_add_column"]
    assert second == []
    assert ("demo", 2) in await applied(empty_dsn, "demo")


async def test_edited_migration_is_a_clear_error(empty_dsn: str) -> None:
    await migrate_dsn(empty_dsn, "demo", [SLOW_CREATE])
    edited = Migration("demo", 1, "slow_create", SLOW_CREATE.sql + " -- tweak")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        await migrate_dsn(empty_dsn, "demo", [edited])


async def test_database_newer_than_build_is_refused(empty_dsn: str) -> None:
    await migrate_dsn(empty_dsn, "demo", [SLOW_CREATE, ADD_COLUMN])
    with pytest.raises(MigrationError, match="does not know"):
        await migrate_dsn(empty_dsn, "demo", [SLOW_CREATE])


async def test_failed_migration_leaves_nothing_half_applied(empty_dsn: str) -> None:
    broken = Migration("demo", 2, "broken", "ALTER TABLE things ADD COLUMN x int; SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate_dsn(empty_dsn, "demo", [SLOW_CREATE, broken])
    assert ("demo", 2) not in await applied(empty_dsn, "demo")
    # The fixed migration then applies cleanly: the broken one's column was rolled back.
    fixed = Migration("demo", 2, "broken", "ALTER TABLE things ADD COLUMN x int;")
    assert await migrate_dsn(empty_dsn, "demo", [SLOW_CREATE, fixed]) == ["demo/0002_broken"]


async def test_two_processes_racing_apply_each_migration_once(empty_dsn: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from modelreg_common.migrations import Migration, migrate_dsn
        migrations = [
            Migration("demo", 1, "slow_create", {SLOW_CREATE.sql!r}),
            Migration("demo", 2, "add_column", {ADD_COLUMN.sql!r}),
        ]
        print(len(asyncio.run(migrate_dsn(sys.argv[1], "demo", migrations))))
        """
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, empty_dsn, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await p.communicate() for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    counts = sorted(int(out.decode().split()[-1]) for out, _ in outputs)
    # One process applied everything; the other waited on the lock and found nothing to do.
    assert counts == [0, len(runtime_migrations()) + 2]
    assert (await applied(empty_dsn, "demo")).count(("demo", 1)) == 1
