"""The artifact domain: uploads in parts with a running sha256, content-addressed files,
manifests that freeze when sealed, and the collector of what nothing references any more."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from modelreg_artifact.domain import validation
from modelreg_artifact.domain.models import (
    DoomedObject,
    Event,
    FileEntry,
    GcReport,
    Manifest,
    Part,
    StoredFile,
    TransferMode,
    UploadHeader,
    UploadSession,
    contiguous_parts,
    sha256_digest,
)
from modelreg_artifact.domain.ports import BlobBackend, Repository
from modelreg_common.access import Role, require
from modelreg_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
)
from modelreg_common.logs import get_logger
from modelreg_common.page_tokens import PageTokens, fingerprint, page_size

log = get_logger("modelreg.artifact")

MAX_PARTS = 10_000
UPLOADED = "artifact.uploaded"
DELETED = "artifact.deleted"
GC_COLLECTED = "artifact.gc_collected"


@dataclass(frozen=True)
class Limits:
    part_size: int
    parts_in_flight: int
    download_chunk: int
    download_read_ahead: int
    max_file_bytes: int
    max_owner_bytes: int
    max_path_bytes: int
    max_segment_bytes: int
    session_ttl: float
    blob_grace: float
    stream_stale: float
    presign_ttl: int
    gc_batch: int


class OwnerSealed(FailedPrecondition):
    """The owner's manifest is sealed: permanent, so a pending upload to it is discarded."""


class VerificationFailed(InvalidArgument):
    """The bytes are not what was declared: even a resumable upload is discarded."""


class _HasherCache:
    """Running sha256 states of interrupted resumable uploads, so a resume continues hashing
    instead of reading the prefix back. Process-local; a resume elsewhere reads back."""

    def __init__(self, capacity: int = 256) -> None:
        self._items: OrderedDict[uuid.UUID, tuple[int, Any]] = OrderedDict()
        self._capacity = capacity

    def put(self, session_id: uuid.UUID, offset: int, hasher: Any) -> None:
        self._items[session_id] = (offset, hasher)
        self._items.move_to_end(session_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def take(self, session_id: uuid.UUID, offset: int) -> Any | None:
        item = self._items.pop(session_id, None)
        return item[1] if item is not None and item[0] == offset else None


class _PartPipeline:
    """Hashes parts in order and writes up to `in_flight` of them concurrently; memory is
    bounded by the semaphore (a part is held only until it is written)."""

    def __init__(
        self,
        artifacts: Artifacts,
        session: UploadSession,
        holder: uuid.UUID,
        hasher: Any | None,
    ) -> None:
        self._a = artifacts
        self._session = session
        self._holder = holder
        self.hasher = hasher
        self._slots = asyncio.Semaphore(artifacts.limits.parts_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        self._hashing: asyncio.Task[None] | None = None
        self.hashed_bytes = 0

    async def submit(self, number: int, offset: int, data: list[memoryview]) -> None:
        self._raise_failure()
        await self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            raise self._error
        size = sum(len(d) for d in data)
        if self.hasher is not None:
            # Hashing is chained (parts in order) but off the receive path: the next part is
            # received while this one is hashed and written.
            self._hashing = asyncio.create_task(
                self._hash(self._hashing, list(data), offset + size)
            )
        task = asyncio.create_task(self._write(number, offset, data, size, self._hashing))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hash(
        self, previous: asyncio.Task[None] | None, data: list[memoryview], upto: int
    ) -> None:
        if previous is not None:
            await previous
        # hashlib drops the GIL on large buffers: the loop keeps serving meanwhile.
        await asyncio.to_thread(_update_all, self.hasher, data)
        self.hashed_bytes = upto

    async def _write(
        self,
        number: int,
        offset: int,
        data: list[memoryview],
        size: int,
        hashing: asyncio.Task[None] | None,
    ) -> None:
        s = self._session
        try:
            etag = await self._a.blobs.write_part(
                s.storage_key, s.backend_upload_id, number, offset, data
            )
            recorded = await self._a.repo.record_part(s.id, self._holder, Part(number, etag, size))
            if not recorded:
                raise FailedPrecondition(
                    f"upload {s.name} expired or was taken over by another stream",
                    metadata={"name": s.name},
                )
            if hashing is not None:
                # The slot (and so the memory) is free only once the part is hashed too.
                await hashing
        except BaseException as exc:
            if self._error is None:
                self._error = exc
        finally:
            self._slots.release()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    async def drain(self) -> None:
        """Wait for every part in flight and the hash (also after a failure, so nothing
        writes later)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._hashing is not None:
            await self._hashing
        self._raise_failure()


class Artifacts:
    def __init__(
        self,
        repo: Repository,
        blobs: BlobBackend,
        limits: Limits,
        page_tokens: PageTokens,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.limits = limits
        self._tokens = page_tokens
        self._clock = clock
        self._hashers = _HasherCache()

    # -- paths and checks ---------------------------------------------------------------
    def _path(self, value: str, field: str = "path") -> str:
        return validation.normalize_path(
            value,
            field,
            max_bytes=self.limits.max_path_bytes,
            max_segment_bytes=self.limits.max_segment_bytes,
        )

    def _check_file_size(self, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise LimitExceeded(
                f"file of {size} bytes exceeds the limit of {self.limits.max_file_bytes} bytes",
                limit="max_file_bytes",
            )

    async def _check_owner_writable(self, owner: str, adding: int) -> int:
        sealed, used = await self.repo.owner_usage(owner)
        if sealed:
            raise _sealed(owner)
        if used + adding > self.limits.max_owner_bytes:
            raise LimitExceeded(
                f"{owner} would hold {used + adding} bytes; the limit is "
                f"{self.limits.max_owner_bytes}",
                limit="max_owner_bytes",
            )
        return used

    def _part_size_for(self, size: int | None) -> int:
        part = self.limits.part_size
        if size is not None and size > part * MAX_PARTS:
            # Grow the part (in whole MiB) so any declared size fits S3's 10,000 parts.
            part = math.ceil(size / MAX_PARTS / 2**20) * 2**20
        return part

    # -- upload sessions ----------------------------------------------------------------
    async def create_session(
        self,
        owner: str,
        path: str,
        media_type: str,
        expected_size: int,
        expected_digest: str,
        *,
        mode: TransferMode = TransferMode.STREAM,
        resumable: bool = True,
        field_prefix: str = "",
    ) -> UploadSession:
        owner = validation.parse_owner(owner, f"{field_prefix}owner")
        # Upload's owner travels in its first streamed message, so the check lives here.
        require(Role.EDITOR, owner)
        path = self._path(path, f"{field_prefix}path")
        media = validation.media_type(media_type, f"{field_prefix}media_type")
        size = validation.optional_size(expected_size, f"{field_prefix}expected_size_bytes")
        digest = validation.optional_digest(expected_digest, f"{field_prefix}expected_digest")
        if size is not None:
            self._check_file_size(size)
        await self._check_owner_writable(owner, size or 0)
        now = self._clock()
        session_id = uuid.uuid4()
        session = UploadSession(
            id=session_id,
            owner=owner,
            path=path,
            media_type=media,
            expected_size=size,
            expected_digest=digest,
            storage_key=f"blobs/{session_id.hex[:2]}/{session_id.hex}",
            backend_upload_id="",
            part_size=self._part_size_for(size),
            mode=mode,
            resumable=resumable,
            create_time=now,
            update_time=now,
        )
        # The row first: whatever the backend then holds, the collector can find it.
        await self.repo.insert_session(session)
        try:
            upload_id = await self.blobs.begin(session.storage_key)
            if upload_id:
                await self.repo.set_backend_upload_id(session.id, upload_id)
        except BaseException:
            await self._discard(session.id)
            raise
        return _replace_upload_id(session, upload_id)

    async def get_session(self, name: str, field: str = "name") -> UploadSession:
        session_id = validation.parse_upload_name(name, field)
        session = await self.repo.get_session(session_id)
        if session is None:
            raise NotFound(name, kind="upload session")
        # Sessions are named by id alone: whoever continues one must be able to write its owner.
        require(Role.EDITOR, session.owner)
        return session

    async def committed_bytes(self, session: UploadSession) -> int:
        return sum(p.size_bytes for p in contiguous_parts(await self.repo.parts(session.id)))

    def expire_time(self, session: UploadSession) -> datetime:
        return session.update_time + timedelta(seconds=self.limits.session_ttl)

    async def cancel(self, name: str) -> None:
        session = await self.get_session(name)
        await self._discard(session.id)

    async def _discard(self, session_id: uuid.UUID) -> None:
        doomed = await self.repo.discard_session(session_id)
        if doomed is not None:
            await self._purge([doomed])

    async def _purge(self, doomed: Sequence[DoomedObject]) -> int:
        """Delete backend objects now; what fails stays queued for the collector."""
        done: list[str] = []
        for item in doomed:
            try:
                await self.blobs.abort(item.storage_key, item.backend_upload_id)
                done.append(item.storage_key)
            except Exception as exc:
                log.warning("artifact.purge_failed", key=item.storage_key, error=str(exc))
        if done:
            with contextlib.suppress(Exception):
                await self.repo.forget_doomed(done)
        return len(done)

    # -- upload through the service -----------------------------------------------------
    async def upload(self, header: UploadHeader, chunks: AsyncIterator[bytes]) -> FileEntry:
        if header.offset < 0:
            raise InvalidArgument("header.offset", "must not be negative")
        if header.session:
            session = await self.get_session(header.session, "header.upload_session")
            if session.mode is not TransferMode.STREAM:
                raise FailedPrecondition(
                    f"{session.name} is a presigned upload; finish it with CompleteUpload",
                    metadata={"name": session.name},
                )
        else:
            if header.offset:
                raise InvalidArgument(
                    "header.offset", "only a resumed upload (header.upload_session) has an offset"
                )
            session = await self.create_session(
                header.owner,
                header.path,
                header.media_type,
                header.expected_size or 0,
                header.expected_digest or "",
                resumable=False,
                field_prefix="header.",
            )
        try:
            return await self._upload_into(session, header.offset, chunks)
        except BaseException as exc:
            keep = session.resumable and not isinstance(
                exc, VerificationFailed | LimitExceeded | InvalidArgument | OwnerSealed
            )
            if not keep:
                # Shielded: a cancelled call (client gone) must still clean up.
                await asyncio.shield(self._discard(session.id))
            raise

    async def _upload_into(
        self, session: UploadSession, offset: int, chunks: AsyncIterator[bytes]
    ) -> FileEntry:
        owner_used = await self._check_owner_writable(session.owner, 0)
        holder = uuid.uuid4()
        parts = await self.repo.claim_session(session.id, holder, self.limits.stream_stale)
        if parts is None:
            raise FailedPrecondition(
                f"another stream is writing {session.name}; retry once it has ended",
                metadata={"name": session.name},
            )
        committed = sum(p.size_bytes for p in parts)
        if offset != committed:
            await self.repo.release_session(session.id, holder)
            raise FailedPrecondition(
                f"{session.name} has {committed} bytes; resume from offset {committed}",
                metadata={"name": session.name, "committed_bytes": str(committed)},
            )
        hasher = hashlib.sha256() if committed == 0 else self._hashers.take(session.id, committed)
        pipeline = _PartPipeline(self, session, holder, hasher)
        pipeline.hashed_bytes = committed
        part_size = session.part_size
        number = len(parts) + 1
        position = committed
        total = committed
        # The received chunks of the part being assembled, as views: parts are cut without
        # copying bytes (a chunk straddling a boundary is split into two views).
        pending: list[memoryview] = []
        pending_bytes = 0
        clean_exit = False
        try:
            async for chunk in chunks:
                total += len(chunk)
                self._check_stream_size(session, total, owner_used)
                view = memoryview(chunk)
                while view:
                    take = min(len(view), part_size - pending_bytes)
                    pending.append(view[:take])
                    pending_bytes += take
                    view = view[take:]
                    if pending_bytes == part_size:
                        await pipeline.submit(number, position, pending)
                        number += 1
                        position += part_size
                        pending, pending_bytes = [], 0
            expected = session.expected_size
            if session.resumable and expected is not None and total < expected:
                # A stream that ended early pauses a resumable upload: whole parts are kept,
                # the short tail is dropped (it is sent again on resume); the `finally` below
                # lets go of the session.
                await pipeline.drain()
                raise FailedPrecondition(
                    f"{session.name} has {position} of {expected} bytes; "
                    f"resume from offset {position}",
                    metadata={"name": session.name, "committed_bytes": str(position)},
                )
            if pending_bytes or number == 1:
                # The last (short) part; an empty file is one empty part.
                await pipeline.submit(number, position, pending)
                position += pending_bytes
            pending = []
            await pipeline.drain()
            clean_exit = True
        finally:
            if not clean_exit:
                await asyncio.shield(self._interrupted(session, holder, pipeline))
        try:
            return await self._complete(session, total, pipeline.hasher)
        finally:
            await asyncio.shield(self.repo.release_session(session.id, holder))

    def _check_stream_size(self, session: UploadSession, total: int, owner_used: int) -> None:
        if session.expected_size is not None and total > session.expected_size:
            raise VerificationFailed(
                "expected_size_bytes",
                f"received more than the declared {session.expected_size} bytes",
            )
        self._check_file_size(total)
        if owner_used + total > self.limits.max_owner_bytes:
            raise LimitExceeded(
                f"{session.owner} would exceed its limit of {self.limits.max_owner_bytes} bytes",
                limit="max_owner_bytes",
            )

    async def _interrupted(
        self, session: UploadSession, holder: uuid.UUID, pipeline: _PartPipeline
    ) -> None:
        """The stream broke: settle the parts in flight, keep the hash state for a resume."""
        with contextlib.suppress(BaseException):
            await pipeline.drain()
        if session.resumable and pipeline.hasher is not None:
            parts = contiguous_parts(await self.repo.parts(session.id))
            hashed_upto = sum(p.size_bytes for p in parts)
            # The hasher has seen every submitted part: reusable only if all of them landed.
            if hashed_upto == pipeline.hashed_bytes:
                self._hashers.put(session.id, hashed_upto, pipeline.hasher)
        with contextlib.suppress(Exception):
            await self.repo.release_session(session.id, holder)

    async def _complete(self, session: UploadSession, size: int, hasher: Any | None) -> FileEntry:
        parts = contiguous_parts(await self.repo.parts(session.id))
        if sum(p.size_bytes for p in parts) != size:
            raise FailedPrecondition(
                f"{session.name} is missing parts; resume it from its committed offset",
                metadata={"name": session.name},
            )
        if session.expected_size is not None and size != session.expected_size:
            raise VerificationFailed(
                "expected_size_bytes",
                f"received {size} bytes, the upload declared {session.expected_size}",
            )
        await self.blobs.complete(session.storage_key, session.backend_upload_id, parts, size)
        if hasher is not None:
            digest = sha256_digest(hasher.hexdigest())
        else:
            # Resumed without the running hash (another replica, a restart): read it back.
            digest, size = await self._hash_object(session.storage_key, size)
        return await self._finalize(session, digest, size)

    async def _hash_object(self, key: str, size: int) -> tuple[str, int]:
        h = hashlib.sha256()
        seen = 0
        async for chunk in self.blobs.read(key, 0, size, self.limits.download_chunk):
            await asyncio.to_thread(h.update, chunk)
            seen += len(chunk)
        return sha256_digest(h.hexdigest()), seen

    async def _finalize(self, session: UploadSession, digest: str, size: int) -> FileEntry:
        if session.expected_digest is not None and digest != session.expected_digest:
            raise VerificationFailed(
                "expected_digest",
                f"the bytes hash to {digest}, the upload declared {session.expected_digest}",
            )
        entry = FileEntry(
            owner=session.owner,
            path=session.path,
            digest=digest,
            size_bytes=size,
            media_type=session.media_type,
            create_time=self._clock(),
        )
        event = Event(
            UPLOADED,
            session.owner,
            {
                "path": session.path,
                "digest": digest,
                "size_bytes": size,
                "media_type": session.media_type,
            },
        )
        stored, duplicate = await self.repo.finalize(
            session.id, entry, session.storage_key, self.limits.max_owner_bytes, event
        )
        if duplicate is not None:
            await self._purge([duplicate])
        return stored

    # -- presigned (direct to S3) -------------------------------------------------------
    def _require_presigned(self) -> None:
        if not self.blobs.supports_presigned:
            raise FailedPrecondition(
                f"presigned URLs need the S3 backend; this server stores artifacts with the "
                f"{self.blobs.name!r} backend: use Upload and Download instead",
                metadata={"backend": self.blobs.name},
            )

    async def create_upload_urls(
        self, owner: str, path: str, media_type: str, size: int, digest: str
    ) -> tuple[UploadSession, list[tuple[int, str, int, int]], datetime]:
        self._require_presigned()
        if size < 0:
            raise InvalidArgument("size_bytes", "must not be negative")
        validation.check_digest(digest, "digest")
        session = await self.create_session(
            owner, path, media_type, size, digest, mode=TransferMode.PRESIGNED, resumable=True
        )
        # A declared size of 0 (an empty file) is stored as "not declared"; keep it exact.
        count = max(1, math.ceil(size / session.part_size))
        urls: list[tuple[int, str, int, int]] = []
        ttl = self.limits.presign_ttl
        for number in range(1, count + 1):
            offset = (number - 1) * session.part_size
            url = await self.blobs.presign_part(
                session.storage_key, session.backend_upload_id, number, ttl
            )
            urls.append((number, url, offset, min(session.part_size, size - offset)))
        return session, urls, self._clock() + timedelta(seconds=ttl)

    async def complete_upload(self, name: str, parts: Sequence[tuple[int, str]]) -> FileEntry:
        self._require_presigned()
        session = await self.get_session(name, "upload_session")
        if session.mode is not TransferMode.PRESIGNED:
            raise FailedPrecondition(
                f"{session.name} streams through the service; finish it with Upload",
                metadata={"name": session.name},
            )
        size = session.expected_size or 0
        count = max(1, math.ceil(size / session.part_size))
        numbers = [n for n, _ in parts]
        if numbers != list(range(1, count + 1)):
            raise InvalidArgument(
                "parts", f"expected parts 1..{count} in order, each with the ETag S3 returned"
            )
        for i, (_, etag) in enumerate(parts):
            if not etag:
                raise InvalidArgument(f"parts[{i}].etag", "must not be empty")
        holder = uuid.uuid4()
        if await self.repo.claim_session(session.id, holder, self.limits.stream_stale) is None:
            raise FailedPrecondition(
                f"{session.name} is being completed by another call",
                metadata={"name": session.name},
            )
        try:
            listed = [
                Part(n, etag, min(session.part_size, size - (n - 1) * session.part_size))
                for n, etag in parts
            ]
            await self.blobs.complete(session.storage_key, session.backend_upload_id, listed, size)
            stored_size = await self.blobs.size_of(session.storage_key)
            if stored_size != size:
                raise VerificationFailed(
                    "size_bytes", f"the object has {stored_size} bytes, {size} were declared"
                )
            digest, seen = await self._hash_object(session.storage_key, size)
            if seen != size:
                raise VerificationFailed(
                    "size_bytes", f"the object has {seen} bytes, {size} were declared"
                )
            return await self._finalize(session, digest, seen)
        except VerificationFailed:
            await asyncio.shield(self._discard(session.id))
            raise
        finally:
            with contextlib.suppress(Exception):
                await self.repo.release_session(session.id, holder)

    async def create_download_url(self, owner: str, path: str) -> tuple[str, datetime]:
        self._require_presigned()
        stored = await self._stored(owner, path)
        ttl = self.limits.presign_ttl
        url = await self.blobs.presign_get(stored.storage_key, ttl)
        return url, self._clock() + timedelta(seconds=ttl)

    # -- reads ---------------------------------------------------------------------------
    async def _stored(self, owner: str, path: str) -> StoredFile:
        owner = validation.parse_owner(owner)
        path = self._path(path)
        stored = await self.repo.get_file(owner, path)
        if stored is None:
            raise NotFound(f"{owner}/files/{path}", kind="file")
        return stored

    async def get_file(self, owner: str, path: str) -> FileEntry:
        return (await self._stored(owner, path)).entry

    async def open_download(
        self, owner: str, path: str, offset: int, length: int
    ) -> tuple[FileEntry, AsyncIterator[bytes]]:
        if offset < 0:
            raise InvalidArgument("offset", "must not be negative")
        if length < 0:
            raise InvalidArgument("length", "must not be negative")
        stored = await self._stored(owner, path)
        size = stored.entry.size_bytes
        if offset > size:
            raise InvalidArgument("offset", f"is past the end of the file ({size} bytes)")
        end = size if length == 0 else min(size, offset + length)
        chunks = self.blobs.read(
            stored.storage_key, offset, end - offset, self.limits.download_chunk
        )
        return stored.entry, read_ahead(chunks, self.limits.download_read_ahead)

    async def list_files(
        self, owner: str, requested_size: int, token: str
    ) -> tuple[list[FileEntry], str]:
        owner = validation.parse_owner(owner)
        limit = page_size(requested_size)
        query = fingerprint("artifact.list_files", owner)
        last = self._tokens.decode(token, query)
        after = str(last[0]) if last else None
        rows = await self.repo.list_files(owner, after, limit + 1)
        next_token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            next_token = self._tokens.encode(query, [rows[-1].path])
        return rows, next_token

    async def delete_file(self, owner: str, path: str) -> None:
        owner = validation.parse_owner(owner)
        path = self._path(path)
        await self.repo.delete_file(owner, path, DELETED)

    async def get_manifest(self, owner: str) -> Manifest:
        return await self.repo.manifest(validation.parse_owner(owner))

    async def seal(self, owner: str) -> Manifest:
        return await self.repo.seal(validation.parse_owner(owner))

    # -- garbage collection -------------------------------------------------------------
    async def collect_garbage(self) -> GcReport:
        batch = self.limits.gc_batch
        expired = await self.repo.expire_sessions(self.limits.session_ttl, batch)
        collected = await self.repo.collect_blobs(self.limits.blob_grace, batch, GC_COLLECTED)
        deleted = 0
        while True:
            doomed = await self.repo.claim_doomed(batch, retry_after=300.0)
            if not doomed:
                break
            purged = await self._purge(doomed)
            deleted += purged
            if purged < len(doomed) or len(doomed) < batch:
                break
        return GcReport(expired, collected, deleted)


async def read_ahead(chunks: AsyncIterator[bytes], depth: int) -> AsyncIterator[bytes]:
    """Yield `chunks` while a task fetches up to `depth` of the next ones. The backend keeps
    reading (S3: draining its socket, which otherwise stalls once aiohttp's small buffer is
    full) while the caller is blocked sending; memory is bounded by `depth` chunks."""
    if depth <= 0:
        async for chunk in chunks:
            yield chunk
        return
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(depth)

    async def fetch() -> None:
        try:
            async for chunk in chunks:
                await queue.put(chunk)
        except Exception as exc:
            await queue.put(exc)
        else:
            await queue.put(None)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    task = asyncio.create_task(fetch())
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Also when the caller stops early (client gone): the fetcher and its stream end.
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def _update_all(hasher: Any, data: list[memoryview]) -> None:
    for piece in data:
        hasher.update(piece)


def _sealed(owner: str) -> FailedPrecondition:
    return OwnerSealed(
        f"{owner} is sealed (its version is READY): its files can no longer change",
        from_state="SEALED",
        metadata={"owner": owner},
    )


def sealed_error(owner: str) -> FailedPrecondition:
    return _sealed(owner)


def _replace_upload_id(session: UploadSession, upload_id: str) -> UploadSession:
    from dataclasses import replace

    return replace(session, backend_upload_id=upload_id)
