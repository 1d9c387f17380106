"""Pooled connections parse the services' hot statements when they are made."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from modelreg_common.database import create_pool
from modelreg_common.migrations import migrate_dsn
from modelreg_common.relay import RELAY_STATEMENTS
from modelreg_common.server import ServiceSpec, migrate_services
from testkit import make_settings, probe_spec


async def test_every_declared_hot_statement_parses_against_its_schema(
    empty_dsn: str, all_specs: list[ServiceSpec]
) -> None:
    # A statement gone stale (a renamed column) would only be a warning at start-up, and the
    # warm-up would silently stop helping: catch it here.
    await migrate_services(empty_dsn, all_specs)
    assert any(spec.warm_statements for spec in all_specs)
    for spec in all_specs:
        with capture_logs() as logs:
            pool = await create_pool(
                empty_dsn,
                spec.schema,
                min_size=1,
                warm_statements=[*spec.warm_statements, *RELAY_STATEMENTS],
            )
            await pool.close()
        assert [e for e in logs if e["event"] == "pool.warm_up_failed"] == [], spec.name


async def test_a_statement_that_does_not_parse_is_reported_and_the_pool_still_works(
    empty_dsn: str,
) -> None:
    await migrate_dsn(empty_dsn, "demo", [])
    with capture_logs() as logs:
        pool = await create_pool(
            empty_dsn,
            "demo",
            min_size=2,
            warm_statements=["SELECT seq FROM outbox WHERE seq > $1", "SELECT nope FROM nowhere"],
        )
    try:
        failures = [e for e in logs if e["event"] == "pool.warm_up_failed"]
        # Once per connection made (min_size), naming the problem.
        assert len(failures) == 2
        assert all("nowhere" in e["error"] for e in failures)
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE seq > $1", 0) == 0
    finally:
        await pool.close()


@pytest.mark.parametrize("min_size", [0, 1])
async def test_a_pool_without_hot_statements_is_unchanged(empty_dsn: str, min_size: int) -> None:
    await migrate_dsn(empty_dsn, "demo", [])
    with capture_logs() as logs:
        pool = await create_pool(empty_dsn, "demo", min_size=min_size)
        assert await pool.fetchval("SELECT 1") == 1
        await pool.close()
    assert [e for e in logs if e["event"] == "pool.warm_up_failed"] == []


async def test_a_warmed_connection_starts_a_repeatable_read_transaction(empty_dsn: str) -> None:
    # asyncpg prepares with Parse/Describe/Flush and no Sync: the server's implicit
    # transaction (with its snapshot) stayed open, and a first BEGIN ISOLATION LEVEL on the
    # connection failed ("must be called before any query").
    await migrate_dsn(empty_dsn, "demo", [])
    pool = await create_pool(
        empty_dsn, "demo", min_size=1, max_size=1, warm_statements=RELAY_STATEMENTS
    )
    try:
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        async with pool.acquire() as conn, conn.transaction(isolation="serializable"):
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_a_pool_minimum_above_its_maximum_opens_the_maximum(start_server: Any) -> None:
    # The default minimum (4) with a smaller configured maximum must not stop start-up.
    server = await start_server(
        [probe_spec()], settings=make_settings(pool_min_size=4, pool_max_size=2)
    )
    pool = server._pools[0]
    assert pool.get_min_size() == 2
    assert pool.get_size() == 2
