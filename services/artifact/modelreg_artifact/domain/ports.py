"""What the artifact domain needs from the outside: a blob backend and a repository."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from modelreg_artifact.domain.models import (
    DoomedObject,
    Event,
    FileEntry,
    Manifest,
    Part,
    StoredFile,
    UploadSession,
)


class BlobBackend(Protocol):
    """Where bytes live. Every upload writes its own key (never shared), in parts; the domain
    decides in the database which key holds the bytes of a digest."""

    name: str
    supports_presigned: bool

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def begin(self, key: str) -> str:
        """Prepare a multipart write of `key`; returns the backend's upload id (or '')."""

    async def write_part(
        self, key: str, upload_id: str, number: int, offset: int, data: Sequence[bytes | memoryview]
    ) -> str:
        """Store one part, given as the received pieces (not joined: the local backend
        writes them with one pwritev, without a copy); returns its ETag."""

    async def complete(
        self, key: str, upload_id: str, parts: Sequence[Part], size_bytes: int
    ) -> None:
        """Assemble the parts into the object, durably, before returning."""

    async def abort(self, key: str, upload_id: str) -> None:
        """Forget a multipart write and delete the object if it exists (idempotent)."""

    async def size_of(self, key: str) -> int: ...

    def read(
        self, key: str, offset: int, length: int, chunk_bytes: int
    ) -> AsyncIterator[bytes]: ...

    async def presign_part(self, key: str, upload_id: str, number: int, ttl: int) -> str: ...

    async def presign_get(self, key: str, ttl: int) -> str: ...


class Repository(Protocol):
    """The artifact tables. Each method is one transaction."""

    async def owner_usage(self, owner: str) -> tuple[bool, int]:
        """(sealed, total bytes of its files)."""

    async def insert_session(self, session: UploadSession) -> None: ...

    async def set_backend_upload_id(self, session_id: uuid.UUID, upload_id: str) -> None: ...

    async def get_session(self, session_id: uuid.UUID) -> UploadSession | None: ...

    async def claim_session(
        self, session_id: uuid.UUID, holder: uuid.UUID, stale_after: float
    ) -> list[Part] | None:
        """Take the session for one stream; returns its contiguous parts (later ones are
        forgotten) or None when another live stream holds it."""

    async def release_session(self, session_id: uuid.UUID, holder: uuid.UUID) -> None: ...

    async def record_part(self, session_id: uuid.UUID, holder: uuid.UUID, part: Part) -> bool:
        """False when the stream no longer holds the session (expired or taken over)."""

    async def parts(self, session_id: uuid.UUID) -> list[Part]: ...

    async def discard_session(self, session_id: uuid.UUID) -> DoomedObject | None:
        """Delete the session and queue its bytes for deletion."""

    async def finalize(
        self,
        session_id: uuid.UUID,
        entry: FileEntry,
        storage_key: str,
        max_owner_bytes: int,
        event: Event,
    ) -> tuple[FileEntry, DoomedObject | None]:
        """Make the upload a file: blob (deduplicated), manifest entry, event, session gone.
        Returns the stored entry and this upload's object if an identical blob already
        existed (to delete)."""

    async def get_file(self, owner: str, path: str) -> StoredFile | None: ...

    async def list_files(self, owner: str, after: str | None, limit: int) -> list[FileEntry]: ...

    async def delete_file(self, owner: str, path: str, event_type: str) -> FileEntry: ...

    async def manifest(self, owner: str) -> Manifest: ...

    async def seal(self, owner: str) -> Manifest: ...

    async def expire_sessions(self, idle_seconds: float, limit: int) -> int: ...

    async def collect_blobs(self, grace_seconds: float, limit: int, event_type: str) -> int: ...

    async def claim_doomed(self, limit: int, retry_after: float) -> list[DoomedObject]: ...

    async def forget_doomed(self, keys: Sequence[str]) -> None: ...
