"""Idempotent creates (AIP-155): the request id, a hash of the request and the response are
saved in the write's own transaction; a replay gets the saved response back."""

from __future__ import annotations

import hashlib

from modelreg_common.database import Connection
from modelreg_common.errors import InvalidArgument


def request_hash(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


async def lookup(conn: Connection, request_id: str, method: str, digest: bytes) -> bytes | None:
    """The saved response for `request_id`, or None. The same id on another request is an
    error: silently returning the other request's response would be worse."""
    row = await conn.fetchrow(
        "SELECT method, request_hash, response FROM idempotency_keys WHERE request_id = $1",
        request_id,
    )
    if row is None:
        return None
    if row["method"] != method or bytes(row["request_hash"]) != digest:
        raise InvalidArgument(
            "request_id", "this request_id was already used for a different request"
        )
    return bytes(row["response"])


async def save(
    conn: Connection, request_id: str, method: str, digest: bytes, response: bytes
) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (request_id, method, request_hash, response)"
        " VALUES ($1, $2, $3, $4)",
        request_id,
        method,
        digest,
        response,
    )
