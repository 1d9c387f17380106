"""PostgreSQL itself crashing under the event log: a backend killed with SIGKILL makes the
postmaster reinitialise shared memory (unwritten WAL buffers included) and run crash
recovery. Appends commit before their WAL flush, so the log must notice and never hand out
again a sequence number a subscriber may have seen; acknowledged appends must survive."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from modelreg.events.v1 import event_pb2, event_service_pb2, event_service_pb2_grpc
from modelreg_common.local_postgres import LocalPostgres, LocalPostgresError
from modelreg_common.server import RegistryServer
from modelreg_events.app import spec_with
from modelreg_events.settings import EventsSettings
from testkit import make_settings

SPEC = spec_with(EventsSettings(allow_private_targets=True, poll_interval_seconds=0.5))


def _start_pg() -> LocalPostgres:
    root = Path(tempfile.mkdtemp(prefix="modelreg-test-crash-pg-"))
    root.chmod(0o755)
    pg = LocalPostgres(root / "data", durable=True)
    pg.start()
    return pg


def _remove_pg(pg: LocalPostgres) -> None:
    try:
        pg.stop()
    except LocalPostgresError:
        # A fast shutdown that arrives during crash recovery (a test that failed early) can
        # hang; never leave the server behind.
        pg._run("pg_ctl", "-D", str(pg.data_dir), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(pg.data_dir.parent, ignore_errors=True)


@pytest.fixture
async def durable_pg() -> AsyncIterator[LocalPostgres]:
    """A PostgreSQL of this test alone (the crash takes every connection to it down)."""
    pg = await asyncio.to_thread(_start_pg)
    try:
        yield pg
    finally:
        await asyncio.to_thread(_remove_pg, pg)


def ev(subject: str) -> event_pb2.Event:
    return event_pb2.Event(
        id=str(uuid.uuid4()), type="model_version.created", subject=subject, actor="alice"
    )


async def publish_retrying(
    stub: event_service_pb2_grpc.EventServiceAsyncStub, event: event_pb2.Event
) -> int:
    """As a relay does: the same event again until the log answers."""
    async with asyncio.timeout(60):
        while True:
            try:
                reply = await stub.PublishEvents(
                    event_service_pb2.PublishEventsRequest(source="crash-test", events=[event]),
                    timeout=5,
                )
                return int(reply.sequences[0])
            except grpc.RpcError:
                await asyncio.sleep(0.2)


async def recovered(dsn: str) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                conn = await asyncpg.connect(dsn)
                try:
                    if await conn.fetchval("SELECT count(*) FROM events.log_alive") == 0:
                        return
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
            await asyncio.sleep(0.05)


async def test_database_crash_keeps_acknowledged_appends_and_never_reuses_a_sequence(
    durable_pg: LocalPostgres,
) -> None:
    server = RegistryServer(make_settings(relay_enabled=False), [SPEC], durable_pg.dsn())
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        stream = stub.Subscribe(event_service_pb2.SubscribeRequest(after_sequence=0))
        before = [await publish_retrying(stub, ev(f"models/c/versions/{i}")) for i in (1, 2, 3)]
        assert before == [1, 2, 3]
        seen = []
        for _ in before:
            message = await stream.read()
            assert isinstance(message, event_service_pb2.SubscribeResponse)
            seen.append(message.event.sequence)
        assert seen == before
        stream.cancel()

        victim = await asyncpg.connect(durable_pg.dsn())
        pid = await victim.fetchval("SELECT pg_backend_pid()")
        os.kill(pid, signal.SIGKILL)
        victim.terminate()
        # Publish only once crash recovery is over (it empties the unlogged `log_alive`):
        # otherwise the next append may still commit, even be flushed, before the postmaster
        # takes every backend down, and then rightly keeps its number.
        await recovered(durable_pg.dsn())

        after = await publish_retrying(stub, ev("models/c/versions/4"))
        assert after > before[-1] + 10_000_000
        assert await publish_retrying(stub, ev("models/c/versions/5")) == after + 1
        listed = await stub.ListEvents(event_service_pb2.ListEventsRequest())
        assert [e.sequence for e in listed.events] == [*before, after, after + 1]
    finally:
        await channel.close()
        await server.stop(0)
