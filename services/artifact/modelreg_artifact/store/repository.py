"""The artifact tables in PostgreSQL (asyncpg, plain parameterised SQL). Each public method
is one short transaction: no connection is held while bytes move."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from modelreg_artifact.domain.models import (
    DoomedObject,
    Event,
    FileEntry,
    Manifest,
    Part,
    StoredFile,
    TransferMode,
    UploadSession,
    contiguous_parts,
    manifest_digest,
)
from modelreg_artifact.domain.service import sealed_error
from modelreg_common.database import transaction
from modelreg_common.errors import FailedPrecondition, LimitExceeded, NotFound
from modelreg_common.outbox import OutboxEvent, add_events

# A pool's connection proxy or a plain connection: both run the same queries.
_Conn = Any

_SESSION_COLUMNS = (
    "id, owner, path, media_type, expected_size, expected_digest, storage_key,"
    " backend_upload_id, part_size, mode, resumable, created_at, updated_at,"
    " holder IS NOT NULL AS writing"
)


def _session(row: asyncpg.Record) -> UploadSession:
    return UploadSession(
        id=row["id"],
        owner=row["owner"],
        path=row["path"],
        media_type=row["media_type"],
        expected_size=row["expected_size"],
        expected_digest=row["expected_digest"],
        storage_key=row["storage_key"],
        backend_upload_id=row["backend_upload_id"],
        part_size=row["part_size"],
        mode=TransferMode(row["mode"]),
        resumable=row["resumable"],
        create_time=row["created_at"],
        update_time=row["updated_at"],
        writing=row["writing"],
    )


def _entry(row: asyncpg.Record) -> FileEntry:
    return FileEntry(
        owner=row["owner"],
        path=row["path"],
        digest=row["digest"],
        size_bytes=row["size_bytes"],
        media_type=row["media_type"],
        create_time=row["create_time"],
    )


def _outbox(event: Event) -> OutboxEvent:
    return OutboxEvent(type=event.type, subject=event.subject, data=event.data)


async def _lock_owner(conn: _Conn, owner: str) -> asyncpg.Record:
    await conn.execute(
        "INSERT INTO owners (owner) VALUES ($1) ON CONFLICT (owner) DO NOTHING", owner
    )
    row = await conn.fetchrow(
        "SELECT owner, sealed_digest, sealed_at FROM owners WHERE owner = $1 FOR UPDATE", owner
    )
    assert row is not None
    result: asyncpg.Record = row
    return result


async def _manifest(conn: _Conn, owner: str) -> Manifest:
    rows = await conn.fetch(
        "SELECT path, digest, size_bytes FROM manifest_entries WHERE owner = $1", owner
    )
    sealed = await conn.fetchrow(
        "SELECT sealed_digest, sealed_at FROM owners WHERE owner = $1", owner
    )
    entries = [(r["path"], r["digest"], r["size_bytes"]) for r in rows]
    seal_time = sealed["sealed_at"] if sealed is not None else None
    return Manifest(
        owner=owner,
        digest=(sealed["sealed_digest"] if seal_time is not None else None)
        or manifest_digest(entries),
        file_count=len(entries),
        total_size_bytes=sum(e[2] for e in entries),
        sealed=seal_time is not None,
        seal_time=seal_time,
    )


class PgRepository:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def owner_usage(self, owner: str) -> tuple[bool, int]:
        row = await self._pool.fetchrow(
            "SELECT (SELECT sealed_at IS NOT NULL FROM owners WHERE owner = $1) AS sealed,"
            " (SELECT coalesce(sum(size_bytes), 0) FROM manifest_entries WHERE owner = $1)"
            " AS used",
            owner,
        )
        assert row is not None
        return bool(row["sealed"]), int(row["used"])

    async def insert_session(self, session: UploadSession) -> None:
        await self._pool.execute(
            "INSERT INTO upload_sessions (id, owner, path, media_type, expected_size,"
            " expected_digest, storage_key, backend_upload_id, part_size, mode, resumable,"
            " created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$12)",
            session.id,
            session.owner,
            session.path,
            session.media_type,
            session.expected_size,
            session.expected_digest,
            session.storage_key,
            session.backend_upload_id,
            session.part_size,
            session.mode.value,
            session.resumable,
            session.create_time,
        )

    async def set_backend_upload_id(self, session_id: uuid.UUID, upload_id: str) -> None:
        await self._pool.execute(
            "UPDATE upload_sessions SET backend_upload_id = $2 WHERE id = $1",
            session_id,
            upload_id,
        )

    async def get_session(self, session_id: uuid.UUID) -> UploadSession | None:
        row = await self._pool.fetchrow(
            f"SELECT {_SESSION_COLUMNS} FROM upload_sessions WHERE id = $1", session_id
        )
        return _session(row) if row is not None else None

    async def claim_session(
        self, session_id: uuid.UUID, holder: uuid.UUID, stale_after: float
    ) -> list[Part] | None:
        async with transaction(self._pool) as conn:
            claimed = await conn.fetchval(
                "UPDATE upload_sessions SET holder = $2, updated_at = now() WHERE id = $1"
                " AND (holder IS NULL OR updated_at < now() - make_interval(secs => $3))"
                " RETURNING id",
                session_id,
                holder,
                stale_after,
            )
            if claimed is None:
                exists = await conn.fetchval(
                    "SELECT 1 FROM upload_sessions WHERE id = $1", session_id
                )
                if exists is None:
                    raise NotFound(f"uploads/{session_id}", kind="upload session")
                return None
            rows = await conn.fetch(
                "SELECT part_number, etag, size_bytes FROM upload_parts WHERE session_id = $1",
                session_id,
            )
            parts = contiguous_parts(
                Part(r["part_number"], r["etag"], r["size_bytes"]) for r in rows
            )
            # Parts after a gap are rewritten by the resumed stream; forget them now.
            await conn.execute(
                "DELETE FROM upload_parts WHERE session_id = $1 AND part_number > $2",
                session_id,
                len(parts),
            )
            return parts

    async def release_session(self, session_id: uuid.UUID, holder: uuid.UUID) -> None:
        await self._pool.execute(
            "UPDATE upload_sessions SET holder = NULL, updated_at = now()"
            " WHERE id = $1 AND holder = $2",
            session_id,
            holder,
        )

    async def record_part(self, session_id: uuid.UUID, holder: uuid.UUID, part: Part) -> bool:
        done = await self._pool.fetchval(
            "WITH s AS (UPDATE upload_sessions SET updated_at = now()"
            "  WHERE id = $1 AND holder = $2 RETURNING id)"
            " INSERT INTO upload_parts (session_id, part_number, etag, size_bytes)"
            " SELECT id, $3, $4, $5 FROM s"
            " ON CONFLICT (session_id, part_number)"
            " DO UPDATE SET etag = EXCLUDED.etag, size_bytes = EXCLUDED.size_bytes"
            " RETURNING 1",
            session_id,
            holder,
            part.number,
            part.etag,
            part.size_bytes,
        )
        return done is not None

    async def parts(self, session_id: uuid.UUID) -> list[Part]:
        rows = await self._pool.fetch(
            "SELECT part_number, etag, size_bytes FROM upload_parts WHERE session_id = $1"
            " ORDER BY part_number",
            session_id,
        )
        return [Part(r["part_number"], r["etag"], r["size_bytes"]) for r in rows]

    async def discard_session(self, session_id: uuid.UUID) -> DoomedObject | None:
        async with transaction(self._pool) as conn:
            row = await conn.fetchrow(
                "DELETE FROM upload_sessions WHERE id = $1 RETURNING storage_key,"
                " backend_upload_id",
                session_id,
            )
            if row is None:
                return None
            await _doom(conn, row["storage_key"], row["backend_upload_id"])
            return DoomedObject(row["storage_key"], row["backend_upload_id"])

    async def finalize(
        self,
        session_id: uuid.UUID,
        entry: FileEntry,
        storage_key: str,
        max_owner_bytes: int,
        event: Event,
    ) -> tuple[FileEntry, DoomedObject | None]:
        async with transaction(self._pool) as conn:
            owner = await _lock_owner(conn, entry.owner)
            if owner["sealed_at"] is not None:
                raise sealed_error(entry.owner)
            gone = await conn.fetchval(
                "DELETE FROM upload_sessions WHERE id = $1 RETURNING id", session_id
            )
            if gone is None:
                raise FailedPrecondition(
                    f"uploads/{session_id} expired before it was completed; upload again",
                    metadata={"name": f"uploads/{session_id}"},
                )
            used = await conn.fetchval(
                "SELECT coalesce(sum(size_bytes), 0) FROM manifest_entries"
                " WHERE owner = $1 AND path <> $2",
                entry.owner,
                entry.path,
            )
            if used + entry.size_bytes > max_owner_bytes:
                raise LimitExceeded(
                    f"{entry.owner} would hold {used + entry.size_bytes} bytes; the limit is "
                    f"{max_owner_bytes}",
                    limit="max_owner_bytes",
                )
            # Takes the blob row's lock: the collector either deleted it already (then this
            # inserts our copy) or skips it until we commit a reference to it.
            winner = await conn.fetchval(
                "INSERT INTO blobs (digest, storage_key, size_bytes) VALUES ($1, $2, $3)"
                " ON CONFLICT (digest) DO UPDATE SET touched_at = now()"
                " RETURNING storage_key",
                entry.digest,
                storage_key,
                entry.size_bytes,
            )
            row = await conn.fetchrow(
                "INSERT INTO manifest_entries (owner, path, digest, size_bytes, media_type,"
                " create_time) VALUES ($1, $2, $3, $4, $5, now())"
                " ON CONFLICT (owner, path) DO UPDATE SET digest = EXCLUDED.digest,"
                " size_bytes = EXCLUDED.size_bytes, media_type = EXCLUDED.media_type,"
                " create_time = EXCLUDED.create_time"
                " RETURNING owner, path, digest, size_bytes, media_type, create_time",
                entry.owner,
                entry.path,
                entry.digest,
                entry.size_bytes,
                entry.media_type,
            )
            assert row is not None
            duplicate = None
            if winner != storage_key:
                await _doom(conn, storage_key, "")
                duplicate = DoomedObject(storage_key, "")
            await add_events(conn, [_outbox(event)])
            return _entry(row), duplicate

    async def get_file(self, owner: str, path: str) -> StoredFile | None:
        row = await self._pool.fetchrow(
            "SELECT e.owner, e.path, e.digest, e.size_bytes, e.media_type, e.create_time,"
            " b.storage_key FROM manifest_entries e JOIN blobs b USING (digest)"
            " WHERE e.owner = $1 AND e.path = $2",
            owner,
            path,
        )
        return StoredFile(_entry(row), row["storage_key"]) if row is not None else None

    async def list_files(self, owner: str, after: str | None, limit: int) -> list[FileEntry]:
        rows = await self._pool.fetch(
            "SELECT owner, path, digest, size_bytes, media_type, create_time"
            " FROM manifest_entries WHERE owner = $1 AND ($2::text IS NULL OR path > $2)"
            " ORDER BY path LIMIT $3",
            owner,
            after,
            limit,
        )
        return [_entry(r) for r in rows]

    async def delete_file(self, owner: str, path: str, event_type: str) -> FileEntry:
        async with transaction(self._pool) as conn:
            locked = await _lock_owner(conn, owner)
            if locked["sealed_at"] is not None:
                raise sealed_error(owner)
            row = await conn.fetchrow(
                "DELETE FROM manifest_entries WHERE owner = $1 AND path = $2"
                " RETURNING owner, path, digest, size_bytes, media_type, create_time",
                owner,
                path,
            )
            if row is None:
                raise NotFound(f"{owner}/files/{path}", kind="file")
            # The blob stays until the collector finds nothing references it (grace counts
            # from now, so a download in progress is not cut off).
            await conn.execute(
                "UPDATE blobs SET touched_at = now() WHERE digest = $1", row["digest"]
            )
            await add_events(
                conn,
                [
                    OutboxEvent(
                        type=event_type,
                        subject=owner,
                        data={"path": path, "digest": row["digest"]},
                    )
                ],
            )
            return _entry(row)

    async def manifest(self, owner: str) -> Manifest:
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            return await _manifest(conn, owner)

    async def seal(self, owner: str) -> Manifest:
        async with transaction(self._pool) as conn:
            locked = await _lock_owner(conn, owner)
            if locked["sealed_at"] is None:
                current = await _manifest(conn, owner)
                await conn.execute(
                    "UPDATE owners SET sealed_digest = $2, sealed_at = now() WHERE owner = $1",
                    owner,
                    current.digest,
                )
            return await _manifest(conn, owner)

    async def expire_sessions(self, idle_seconds: float, limit: int) -> int:
        async with transaction(self._pool) as conn:
            rows = await conn.fetch(
                "DELETE FROM upload_sessions WHERE id IN ("
                "  SELECT id FROM upload_sessions"
                "  WHERE updated_at < now() - make_interval(secs => $1)"
                "  ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
                " RETURNING storage_key, backend_upload_id",
                idle_seconds,
                limit,
            )
            for row in rows:
                await _doom(conn, row["storage_key"], row["backend_upload_id"])
            return len(rows)

    async def collect_blobs(self, grace_seconds: float, limit: int, event_type: str) -> int:
        async with transaction(self._pool) as conn:
            # The reference check is repeated in the DELETE: a row locked by a concurrent
            # upload's finalize is skipped, and one re-read after it commits is kept.
            rows = await conn.fetch(
                "DELETE FROM blobs b WHERE b.digest IN ("
                "  SELECT digest FROM blobs c"
                "  WHERE c.touched_at < now() - make_interval(secs => $1)"
                "  AND NOT EXISTS (SELECT 1 FROM manifest_entries e WHERE e.digest = c.digest)"
                "  ORDER BY c.touched_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
                " AND b.touched_at < now() - make_interval(secs => $1)"
                " AND NOT EXISTS (SELECT 1 FROM manifest_entries e WHERE e.digest = b.digest)"
                " RETURNING digest, storage_key, size_bytes",
                grace_seconds,
                limit,
            )
            for row in rows:
                await _doom(conn, row["storage_key"], "")
            await add_events(
                conn,
                [
                    OutboxEvent(
                        type=event_type,
                        subject=r["digest"],
                        data={"digest": r["digest"], "size_bytes": r["size_bytes"]},
                    )
                    for r in rows
                ],
            )
            return len(rows)

    async def claim_doomed(self, limit: int, retry_after: float) -> list[DoomedObject]:
        # A lease, not a held lock: no connection stays open while the backend deletes.
        rows = await self._pool.fetch(
            "UPDATE doomed_objects SET attempt_after = now() + make_interval(secs => $2)"
            " WHERE storage_key IN (SELECT storage_key FROM doomed_objects"
            "  WHERE attempt_after <= now() ORDER BY attempt_after LIMIT $1"
            "  FOR UPDATE SKIP LOCKED)"
            " RETURNING storage_key, backend_upload_id",
            limit,
            retry_after,
        )
        return [DoomedObject(r["storage_key"], r["backend_upload_id"]) for r in rows]

    async def forget_doomed(self, keys: Sequence[str]) -> None:
        await self._pool.execute(
            "DELETE FROM doomed_objects WHERE storage_key = ANY($1::text[])", list(keys)
        )


async def _doom(conn: _Conn, key: str, upload_id: str) -> None:
    await conn.execute(
        "INSERT INTO doomed_objects (storage_key, backend_upload_id) VALUES ($1, $2)"
        " ON CONFLICT (storage_key) DO UPDATE SET attempt_after = now(),"
        " backend_upload_id = EXCLUDED.backend_upload_id",
        key,
        upload_id,
    )
