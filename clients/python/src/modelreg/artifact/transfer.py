"""Client helpers for moving files through the artifact service: streamed upload with a local
sha256 (optionally resumable after a broken stream) and a download that verifies the digest.

File reads, writes and hashing run in worker threads, so an asyncio application keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from modelreg.artifact.v1 import artifact_pb2, artifact_service_pb2, artifact_service_pb2_grpc

DEFAULT_CHUNK = 4 * 1024 * 1024
# Worth resuming after these; anything else is the caller's problem.
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
     grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED}
)  # fmt: skip


class DigestMismatch(Exception):
    """What arrived does not hash to what the service recorded."""


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb", buffering=0) as handle:
        handle.seek(offset)
        return handle.read(size)


def _read_and_hash(handle: Any, size: int, hasher: hashlib._Hash | None) -> bytes:
    data: bytes = handle.read(size)
    if hasher is not None and data:
        hasher.update(data)
    return data


async def _chunks(
    path: Path,
    header: artifact_service_pb2.UploadHeader,
    offset: int,
    chunk_size: int,
    hasher: hashlib._Hash | None,
) -> AsyncIterator[artifact_service_pb2.UploadRequest]:
    yield artifact_service_pb2.UploadRequest(header=header)
    handle = await asyncio.to_thread(path.open, "rb", buffering=0)
    # Read ahead: the next chunk is read (and hashed) while gRPC sends this one.
    ahead: asyncio.Future[bytes] | None = None
    try:
        await asyncio.to_thread(handle.seek, offset)
        ahead = asyncio.ensure_future(asyncio.to_thread(_read_and_hash, handle, chunk_size, hasher))
        while True:
            data = await ahead
            ahead = None
            if not data:
                return
            ahead = asyncio.ensure_future(
                asyncio.to_thread(_read_and_hash, handle, chunk_size, hasher)
            )
            yield artifact_service_pb2.UploadRequest(chunk=data)
    finally:
        if ahead is not None:
            with contextlib.suppress(BaseException):
                await ahead
        handle.close()


async def upload_file(
    stub: artifact_service_pb2_grpc.ArtifactServiceAsyncStub,
    owner: str,
    path: str,
    source: str | os.PathLike[str],
    *,
    media_type: str = "",
    digest: str = "",
    chunk_size: int = DEFAULT_CHUNK,
    rpc_timeout: float | None = None,
) -> artifact_pb2.FileEntry:
    """One-shot upload. Without `digest` the file is hashed while it is sent and compared with
    the digest the service computed."""
    source = Path(source)
    size = (await asyncio.to_thread(source.stat)).st_size
    header = artifact_service_pb2.UploadHeader(
        owner=owner, path=path, media_type=media_type, expected_size_bytes=size,
        expected_digest=digest,
    )  # fmt: skip
    hasher = None if digest else hashlib.sha256()
    response = await stub.Upload(
        _chunks(source, header, 0, chunk_size, hasher), timeout=rpc_timeout
    )
    local = f"sha256:{hasher.hexdigest()}" if hasher is not None else digest
    if response.file.digest != local:
        raise DigestMismatch(f"sent {local}, the service stored {response.file.digest}")
    return response.file


async def upload_file_resumable(
    stub: artifact_service_pb2_grpc.ArtifactServiceAsyncStub,
    owner: str,
    path: str,
    source: str | os.PathLike[str],
    *,
    media_type: str = "",
    chunk_size: int = DEFAULT_CHUNK,
    attempts: int = 5,
    rpc_timeout: float | None = None,
) -> artifact_pb2.FileEntry:
    """Upload through an upload session, continuing from the committed offset when a stream
    breaks. The file's sha256 is computed first and declared, so the service verifies it."""
    source = Path(source)
    size, digest = await asyncio.to_thread(file_digest, source)
    created = await stub.CreateUploadSession(
        artifact_service_pb2.CreateUploadSessionRequest(
            owner=owner, path=path, media_type=media_type, expected_size_bytes=size,
            expected_digest=digest,
        ),
        timeout=rpc_timeout,
    )  # fmt: skip
    name = created.upload_session.name
    offset = 0
    failure: grpc.aio.AioRpcError | None = None
    for attempt in range(attempts):
        header = artifact_service_pb2.UploadHeader(upload_session=name, offset=offset)
        try:
            response = await stub.Upload(
                _chunks(source, header, offset, chunk_size, None), timeout=rpc_timeout
            )
            return response.file
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE | {grpc.StatusCode.FAILED_PRECONDITION}:
                raise
            if attempt == attempts - 1:
                raise
            failure = exc
            # FAILED_PRECONDITION: the old stream still held the session, or the stream ended
            # early; if the session is gone (discarded: sealed owner), the error is final.
        # The server lets go of the broken stream a moment later; resume once it has.
        for wait in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 2.0, 2.0):
            try:
                session = await stub.GetUploadSession(
                    artifact_service_pb2.GetUploadSessionRequest(name=name), timeout=rpc_timeout
                )
            except grpc.aio.AioRpcError as gone:
                if gone.code() == grpc.StatusCode.NOT_FOUND and failure is not None:
                    raise failure from None
                raise
            if not session.upload_session.writing:
                break
            await asyncio.sleep(wait)
        offset = session.upload_session.committed_bytes
    raise AssertionError("unreachable")


def file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb", buffering=0) as handle:
        while data := handle.read(DEFAULT_CHUNK):
            h.update(data)
            size += len(data)
    return size, f"sha256:{h.hexdigest()}"


async def download_file(
    stub: artifact_service_pb2_grpc.ArtifactServiceAsyncStub,
    owner: str,
    path: str,
    destination: str | os.PathLike[str],
    *,
    rpc_timeout: float | None = None,
) -> artifact_pb2.FileEntry:
    """Download a whole file and verify its sha256 against the service's record."""
    destination = Path(destination)
    hasher = hashlib.sha256()
    entry: artifact_pb2.FileEntry | None = None
    handle = await asyncio.to_thread(destination.open, "wb", buffering=0)
    # The previous chunk is written and hashed (in two threads at once: each takes about as
    # long as the other, and both let go of the GIL) while the next one arrives.
    pending: list[asyncio.Future[Any]] = []
    try:
        call = stub.Download(
            artifact_service_pb2.DownloadRequest(owner=owner, path=path), timeout=rpc_timeout
        )
        async for message in call:
            if message.HasField("file"):
                entry = message.file
            data = message.chunk
            if pending:
                await asyncio.gather(*pending)
            pending = [
                asyncio.ensure_future(asyncio.to_thread(_write_all, handle, data)),
                asyncio.ensure_future(asyncio.to_thread(hasher.update, data)),
            ]
        await asyncio.gather(*pending)
    finally:
        # Never close the file under a write still running in its thread.
        with contextlib.suppress(BaseException):
            await asyncio.gather(*pending)
        handle.close()
    if entry is None:
        raise DigestMismatch("the service sent no file entry")
    got = f"sha256:{hasher.hexdigest()}"
    if got != entry.digest:
        destination.unlink(missing_ok=True)
        raise DigestMismatch(f"received {got}, the service recorded {entry.digest}")
    return entry


def _write_all(handle: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written: int = handle.write(view)
        view = view[written:]
