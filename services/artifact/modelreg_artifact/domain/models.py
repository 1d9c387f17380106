"""The artifact domain's values: files, manifests, pending uploads."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

DIGEST_PREFIX = "sha256:"


class TransferMode(Enum):
    STREAM = "stream"
    PRESIGNED = "presigned"


@dataclass(frozen=True)
class FileEntry:
    owner: str
    path: str
    digest: str
    size_bytes: int
    media_type: str
    create_time: datetime


@dataclass(frozen=True)
class Manifest:
    owner: str
    digest: str
    file_count: int
    total_size_bytes: int
    sealed: bool
    seal_time: datetime | None


@dataclass(frozen=True)
class Part:
    number: int
    etag: str
    size_bytes: int


@dataclass(frozen=True)
class UploadSession:
    id: uuid.UUID
    owner: str
    path: str
    media_type: str
    expected_size: int | None
    expected_digest: str | None
    storage_key: str
    backend_upload_id: str
    part_size: int
    mode: TransferMode
    resumable: bool
    create_time: datetime
    update_time: datetime
    # A stream holds it right now.
    writing: bool = False

    @property
    def name(self) -> str:
        return f"uploads/{self.id}"


@dataclass(frozen=True)
class StoredFile:
    """A file entry and where its bytes are."""

    entry: FileEntry
    storage_key: str


@dataclass(frozen=True)
class DoomedObject:
    storage_key: str
    backend_upload_id: str


@dataclass(frozen=True)
class Event:
    """An event for the outbox; the store writes it in the change's transaction."""

    type: str
    subject: str
    data: dict[str, object]


@dataclass(frozen=True)
class UploadHeader:
    owner: str
    path: str
    media_type: str
    expected_size: int | None
    expected_digest: str | None
    session: str
    offset: int


@dataclass(frozen=True)
class GcReport:
    expired_sessions: int
    collected_blobs: int
    deleted_objects: int


def sha256_digest(hex_digest: str) -> str:
    return f"{DIGEST_PREFIX}{hex_digest}"


def manifest_digest(entries: Iterable[tuple[str, str, int]]) -> str:
    """sha256 over `(path, digest, size)` entries sorted by the UTF-8 bytes of the path, one
    `path\\tdigest\\tsize\\n` line each (paths cannot contain tabs or newlines)."""
    h = hashlib.sha256()
    for path, digest, size in sorted(entries, key=lambda e: e[0].encode()):
        h.update(f"{path}\t{digest}\t{size}\n".encode())
    return sha256_digest(h.hexdigest())


def contiguous_parts(parts: Iterable[Part]) -> list[Part]:
    """Parts 1..n without a gap: the prefix of an upload that is really there."""
    by_number = {p.number: p for p in parts}
    prefix: list[Part] = []
    while len(prefix) + 1 in by_number:
        prefix.append(by_number[len(prefix) + 1])
    return prefix
