"""Which PostgreSQL to use: the configured one, or the embedded one under MODELREG_HOME."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from modelreg_common.local_postgres import LocalPostgres
from modelreg_common.logs import get_logger
from modelreg_common.settings import Settings

log = get_logger("modelreg.database")

EMBEDDED_DATABASE = "modelreg"


async def _ensure_database(admin_dsn: str, name: str) -> None:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[str]:
    """Yields a DSN; the embedded server, if started here, is stopped on exit."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    home = settings.home.expanduser().resolve()
    server = LocalPostgres(home / "postgres", durable=True)
    await asyncio.to_thread(server.start)
    log.info("embedded_postgres.started", data_dir=str(server.data_dir), port=server.port)
    try:
        await _ensure_database(server.dsn(), EMBEDDED_DATABASE)
        yield server.dsn(EMBEDDED_DATABASE)
    finally:
        await asyncio.to_thread(server.stop)
        log.info("embedded_postgres.stopped")
