"""Session-wide real backends: one PostgreSQL and one SeaweedFS per test run, on loopback.

Each test that needs a database gets a fresh one cloned from a template that every service's
migrations were applied to once. `MODELREG_TEST_DATABASE_URL` (an admin DSN) makes the suite
use an already running PostgreSQL instead of starting its own.
"""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from grpc import aio

from modelreg_common.local_postgres import LocalPostgres
from modelreg_common.local_s3 import LocalS3
from modelreg_common.server import RegistryServer, ServiceSpec, migrate_services
from modelreg_common.settings import Settings
from modelreg_server.catalog import load_specs
from testkit import make_settings


def pytest_configure(config: pytest.Config) -> None:
    # A terminated run (CI's time limit, `timeout`, Ctrl-C from a supervisor) still tears its
    # fixtures down, so no PostgreSQL or SeaweedFS outlives it.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


class PgAdmin:
    """An admin connection string plus helpers to make and drop databases."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn

    def dsn(self, database: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{database}"

    async def execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgAdmin]:
    external = os.environ.get("MODELREG_TEST_DATABASE_URL")
    if external:
        yield PgAdmin(external)
        return
    root = Path(tempfile.mkdtemp(prefix="modelreg-test-pg-"))
    root.chmod(0o755)
    server = LocalPostgres(root / "data", durable=False)
    server.start()
    try:
        yield PgAdmin(server.dsn())
    finally:
        server.remove()
        root.rmdir()


@pytest.fixture(scope="session")
def all_specs() -> list[ServiceSpec]:
    return load_specs()


@pytest.fixture(scope="session")
async def template(pg: PgAdmin, all_specs: list[ServiceSpec]) -> AsyncIterator[str]:
    name = f"template_{uuid.uuid4().hex[:12]}"
    await pg.execute(f'CREATE DATABASE "{name}"')
    await migrate_services(pg.dsn(name), all_specs)
    yield name
    await pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def dsn(pg: PgAdmin, template: str) -> AsyncIterator[str]:
    """A fresh, fully migrated database for one test."""
    name = f"t_{uuid.uuid4().hex}"
    await pg.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield pg.dsn(name)
    await pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_dsn(pg: PgAdmin) -> AsyncIterator[str]:
    """A fresh database with no migrations applied."""
    name = f"e_{uuid.uuid4().hex}"
    await pg.execute(f'CREATE DATABASE "{name}"')
    yield pg.dsn(name)
    await pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3() -> Iterator[LocalS3]:
    """A real SeaweedFS S3 gateway with signature checks on; started on first use."""
    root = Path(tempfile.mkdtemp(prefix="modelreg-test-s3-"))
    server = LocalS3(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


StartServer = Callable[..., Awaitable[RegistryServer]]


@pytest.fixture
async def start_server(dsn: str) -> AsyncIterator[StartServer]:
    """Start an in-process RegistryServer on 127.0.0.1:0 over this test's database:
    `server = await start_server(specs, settings=..., **server_kwargs)`."""
    started: list[RegistryServer] = []

    async def start(
        specs: Sequence[ServiceSpec], *, settings: Settings | None = None, **kwargs: Any
    ) -> RegistryServer:
        server = RegistryServer(settings or make_settings(), specs, dsn, **kwargs)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop(0)


@pytest.fixture
async def registry(start_server: StartServer, all_specs: list[ServiceSpec]) -> RegistryServer:
    """Every service of this build in one in-process server, as `modelreg serve` runs them."""
    return await start_server(all_specs)


@pytest.fixture
async def channel(registry: RegistryServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(registry.address) as ch:
        yield ch
