"""One asyncpg pool per service, its connections confined to the service's own schema."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

import asyncpg

from modelreg_common.errors import Unavailable
from modelreg_common.logs import get_logger

log = get_logger("modelreg.database")

# A connection as handed out by a pool or opened directly; both run the same queries.
Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"


async def _init_connection(conn: asyncpg.Connection[Any], warm: Sequence[str] = ()) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
    # A new backend parses its first statement over a cold catalog cache: the event log's
    # append took 8-12 ms the first time on each connection and 0.5 ms after (W5's first
    # events on a fresh server were its slowest). Preparing the service's hot statements
    # here moves that cost to when the connection is made (start-up, for `pool_min_size`).
    for sql in warm:
        try:
            await conn.prepare(sql)
        except asyncpg.PostgresError as exc:
            # Only a warm-up: the statement fails (and is reported) when really run.
            log.warning("pool.warm_up_failed", error=str(exc)[:300])
    if warm:
        # asyncpg prepares with Parse/Describe/Flush, no Sync: the server's implicit
        # transaction (and its snapshot) stays open until the next Sync, and a first
        # `BEGIN ISOLATION LEVEL ...` on the connection would then fail. A simple query
        # ends that transaction here.
        await conn.execute("SELECT 1")


async def _reset_connection(conn: asyncpg.Connection[Any]) -> None:
    """On release, only end a transaction left open (say, by a cancelled call).

    Service code keeps no session state (it uses SET LOCAL, and LISTEN has its own
    connection), so asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL)
    would be an extra round trip on every call for nothing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    warm_statements: Sequence[str] = (),
) -> asyncpg.Pool[Any]:
    """A pool whose every connection has `search_path` set to `schema`, so a service's SQL
    names its own tables unqualified and cannot stray into another service's, and has
    `warm_statements` (a service's hot path) parsed before its first use."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=functools.partial(_init_connection, warm=tuple(warm_statements)),
            reset=_reset_connection,
            server_settings={"search_path": schema, "application_name": f"modelreg-{schema}"},
        )
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as exc:
        raise Unavailable(f"cannot connect to PostgreSQL: {exc}", backend="postgres") from exc
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool[Any]) -> AsyncIterator[Connection]:
    """A connection inside one transaction: committed on exit, rolled back on any error."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def runtime_secret(pool: asyncpg.Pool[Any], name: str) -> bytes:
    value = await pool.fetchval("SELECT value FROM runtime_secrets WHERE name = $1", name)
    if value is None:
        raise RuntimeError(f"runtime secret {name!r} is missing; run the migrations")
    return bytes(value)
