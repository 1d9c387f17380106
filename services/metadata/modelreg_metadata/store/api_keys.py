"""API keys in PostgreSQL: records and secret hashes, never secrets."""

from __future__ import annotations

from typing import Any

import asyncpg

from modelreg_common.errors import AlreadyExists
from modelreg_common.filters import FieldType
from modelreg_common.page_tokens import PageTokens
from modelreg_metadata.domain.models import ApiKey, ApiKeyDraft, ListQuery, Page
from modelreg_metadata.store.paging import Listing, fetch_page

# secret_sha256 is deliberately not among the columns a key is read with.
_COLUMNS = (
    "k.id, k.display_name, k.principal, k.groups, k.secret_prefix, k.created_by,"
    " k.create_time, k.expire_time, k.revoke_time"
)

LISTING = Listing(
    kind="api_keys",
    columns=_COLUMNS,
    source="api_keys k",
    fields={},
    sortable={"create_time": ("k.create_time", FieldType.TIMESTAMP)},
    default_order="create_time",
    tie_breakers=[("id", "k.id", FieldType.STRING)],
)


def to_api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        display_name=row["display_name"],
        principal=row["principal"],
        groups=tuple(row["groups"]),
        secret_prefix=row["secret_prefix"],
        created_by=row["created_by"],
        create_time=row["create_time"],
        expire_time=row["expire_time"],
        revoke_time=row["revoke_time"],
    )


class ApiKeys:
    def __init__(self, conn: asyncpg.Connection[Any], tokens: PageTokens) -> None:
        self._conn = conn
        self._tokens = tokens

    async def create(
        self,
        key_id: str,
        draft: ApiKeyDraft,
        principal: str,
        secret_sha256: bytes,
        secret_prefix: str,
        created_by: str,
        request_id: str,
    ) -> ApiKey:
        try:
            row = await self._conn.fetchrow(
                f"""
                INSERT INTO api_keys AS k (id, display_name, principal, groups, secret_sha256,
                    secret_prefix, created_by, expire_time, request_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nullif($9, ''))
                RETURNING {_COLUMNS}
                """,
                key_id,
                draft.display_name,
                principal,
                list(draft.groups),
                secret_sha256,
                secret_prefix,
                created_by,
                draft.expire_time,
                request_id,
            )
        except asyncpg.UniqueViolationError:
            # A random 128-bit id or 256-bit secret colliding: practically never; never INTERNAL.
            raise AlreadyExists(f"apiKeys/{key_id}", kind="API key") from None
        assert row is not None
        return to_api_key(row)

    async def get(self, key_id: str, *, for_update: bool = False) -> ApiKey | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys k WHERE k.id = $1{lock}", key_id
        )
        return None if row is None else to_api_key(row)

    async def revoke(self, key_id: str) -> ApiKey:
        row = await self._conn.fetchrow(
            f"UPDATE api_keys k SET revoke_time = now() WHERE k.id = $1 RETURNING {_COLUMNS}",
            key_id,
        )
        assert row is not None
        return to_api_key(row)

    async def find_active(self, secret_sha256: bytes) -> tuple[ApiKey, bytes] | None:
        row = await self._conn.fetchrow(
            f"""
            SELECT {_COLUMNS}, k.secret_sha256 FROM api_keys k
            WHERE k.secret_sha256 = $1 AND k.revoke_time IS NULL
                AND (k.expire_time IS NULL OR k.expire_time > now())
            """,
            secret_sha256,
        )
        if row is None:
            return None
        return to_api_key(row), bytes(row["secret_sha256"])

    async def search(
        self, principal: str | None, show_revoked: bool, query: ListQuery
    ) -> Page[ApiKey]:
        scope = [("k.principal = {}", principal)] if principal is not None else []
        extra = [] if show_revoked else ["k.revoke_time IS NULL"]
        rows, token = await fetch_page(
            self._conn, self._tokens, LISTING, query, scope=scope, extra_where=extra
        )
        return Page(tuple(to_api_key(r) for r in rows), token)
