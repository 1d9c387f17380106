"""The outbox writes events in the change's own transaction, with the caller's identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from modelreg_common.context import CallInfo, Principal, bind_call, unbind_call
from modelreg_common.database import create_pool, transaction
from modelreg_common.migrations import migrate_dsn
from modelreg_common.outbox import OutboxEvent, add_event, add_events


@pytest.fixture
async def pool(empty_dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    await migrate_dsn(empty_dsn, "demo", [])
    pool = await create_pool(empty_dsn, "demo")
    yield pool
    await pool.close()


async def test_events_carry_actor_and_request_id_of_the_call(pool: asyncpg.Pool[Any]) -> None:
    token = bind_call(
        CallInfo(method="/x/Y", request_id="req-1", principal=Principal(subject="alice"))
    )
    try:
        async with transaction(pool) as conn:
            await add_events(
                conn,
                [
                    OutboxEvent("model_version.created", "models/a/versions/1", {"n": 1}),
                    OutboxEvent("model_version.created", "models/a/versions/2", {"n": 2}),
                ],
            )
    finally:
        unbind_call(token)
    rows = await pool.fetch("SELECT subject, actor, request_id, data FROM outbox ORDER BY seq")
    assert [(r["subject"], r["actor"], r["request_id"], r["data"]) for r in rows] == [
        ("models/a/versions/1", "alice", "req-1", {"n": 1}),
        ("models/a/versions/2", "alice", "req-1", {"n": 2}),
    ]


async def test_rolled_back_change_leaves_no_event(pool: asyncpg.Pool[Any]) -> None:
    with pytest.raises(RuntimeError, match="change failed"):
        async with transaction(pool) as conn:
            await add_event(conn, OutboxEvent("registered_model.created", "models/a"))
            raise RuntimeError("change failed")
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_writing_outside_a_transaction_is_refused(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the change's transaction"):
            await add_event(conn, OutboxEvent("registered_model.created", "models/a"))
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_commit_notifies_listeners_with_the_schema(pool: asyncpg.Pool[Any]) -> None:
    got: list[str] = []

    def collect(*args: Any) -> None:
        got.append(args[3])

    async with pool.acquire() as listener:
        await listener.add_listener("modelreg_outbox", collect)
        try:
            async with transaction(pool) as conn:
                await add_event(conn, OutboxEvent("registered_model.created", "models/a"))
            await listener.execute("SELECT 1")  # a round trip delivers pending notifications
        finally:
            await listener.remove_listener("modelreg_outbox", collect)
    assert got == ["demo"]
