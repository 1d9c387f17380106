"""The unit of work: one connection, one transaction, the repositories over it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import asyncpg

from modelreg_common import idempotency
from modelreg_common.outbox import OutboxEvent, add_events
from modelreg_common.page_tokens import PageTokens
from modelreg_metadata.domain.models import Event, IdempotencyKey
from modelreg_metadata.store.api_keys import ApiKeys
from modelreg_metadata.store.experiments import Experiments
from modelreg_metadata.store.lineage import Lineage
from modelreg_metadata.store.model_versions import ModelVersions
from modelreg_metadata.store.policies import Policies
from modelreg_metadata.store.registered_models import RegisteredModels
from modelreg_metadata.store.runs import Runs


class PgTx:
    def __init__(self, conn: asyncpg.Connection[Any], tokens: PageTokens) -> None:
        self.conn = conn
        self.models = RegisteredModels(conn, tokens)
        self.versions = ModelVersions(conn, tokens)
        self.experiments = Experiments(conn, tokens)
        self.runs = Runs(conn, tokens)
        self.lineage = Lineage(conn)
        self.api_keys = ApiKeys(conn, tokens)
        self.policies = Policies(conn)

    async def publish(self, events: Sequence[Event]) -> None:
        await add_events(
            self.conn, [OutboxEvent(type=e.type, subject=e.subject, data=e.data) for e in events]
        )

    async def replay(self, key: IdempotencyKey) -> str | None:
        """The resource name a previous call with this request id created, or None. Holds a
        transaction-scoped lock on the id so two concurrent retries do not both create."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", key.request_id
        )
        saved = await idempotency.lookup(self.conn, key.request_id, key.method, key.digest)
        return None if saved is None else saved.decode()

    async def remember(self, key: IdempotencyKey, name: str) -> None:
        await idempotency.save(self.conn, key.request_id, key.method, key.digest, name.encode())


class PgUnitOfWork:
    def __init__(self, pool: asyncpg.Pool[Any], tokens: PageTokens) -> None:
        self._pool = pool
        self._tokens = tokens

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[PgTx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PgTx(cast("asyncpg.Connection[Any]", conn), self._tokens)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[PgTx]:
        """A connection without an explicit transaction, for single-statement reads."""
        async with self._pool.acquire() as conn:
            yield PgTx(cast("asyncpg.Connection[Any]", conn), self._tokens)
