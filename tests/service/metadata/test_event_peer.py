"""Every mutation's outbox row carries the network peer of the call, including the
`model_version.created` row that the version-numbering statement writes itself."""

from __future__ import annotations

import uuid

import asyncpg

from modelreg.client import AsyncRegistry


async def test_version_and_model_events_record_the_callers_peer(registry, dsn: str) -> None:
    model = f"peer-{uuid.uuid4().hex[:8]}"
    async with AsyncRegistry(registry.address) as client:
        await client.metadata.create_registered_model(registered_model_id=model)
        await client.metadata.create_model_version(parent=f"models/{model}")
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT type, peer FROM metadata.outbox WHERE subject LIKE $1 ORDER BY seq",
            f"models/{model}%",
        )
    finally:
        await conn.close()
    assert [r["type"] for r in rows] == ["registered_model.created", "model_version.created"]
    for row in rows:
        assert row["peer"].startswith("ipv4:127.0.0.1:"), row
