"""The only place where artifact protos and domain values meet."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from modelreg.artifact.v1 import artifact_pb2, artifact_service_pb2
from modelreg_artifact.domain.models import (
    FileEntry,
    Manifest,
    TransferMode,
    UploadHeader,
    UploadSession,
)

_MODES = {
    TransferMode.STREAM: artifact_pb2.TRANSFER_MODE_STREAM,
    TransferMode.PRESIGNED: artifact_pb2.TRANSFER_MODE_PRESIGNED,
}


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def file_entry(entry: FileEntry) -> artifact_pb2.FileEntry:
    return artifact_pb2.FileEntry(
        owner=entry.owner,
        path=entry.path,
        digest=entry.digest,
        size_bytes=entry.size_bytes,
        media_type=entry.media_type,
        create_time=timestamp(entry.create_time),
    )


def manifest(value: Manifest) -> artifact_pb2.Manifest:
    return artifact_pb2.Manifest(
        owner=value.owner,
        digest=value.digest,
        file_count=value.file_count,
        total_size_bytes=value.total_size_bytes,
        sealed=value.sealed,
        seal_time=timestamp(value.seal_time),
    )


def upload_session(
    session: UploadSession, committed: int, expire_time: datetime
) -> artifact_pb2.UploadSession:
    return artifact_pb2.UploadSession(
        name=session.name,
        owner=session.owner,
        path=session.path,
        media_type=session.media_type,
        expected_size_bytes=session.expected_size or 0,
        expected_digest=session.expected_digest or "",
        committed_bytes=committed,
        part_size_bytes=session.part_size,
        mode=_MODES[session.mode],
        create_time=timestamp(session.create_time),
        expire_time=timestamp(expire_time),
        writing=session.writing,
    )


def upload_header(header: artifact_service_pb2.UploadHeader) -> UploadHeader:
    return UploadHeader(
        owner=header.owner,
        path=header.path,
        media_type=header.media_type,
        expected_size=header.expected_size_bytes,
        expected_digest=header.expected_digest,
        session=header.upload_session,
        offset=header.offset,
    )


# DownloadResponse on the wire: `file` is field 1, `chunk` field 2, both length-delimited.
_FILE_TAG = b"\x0a"
_CHUNK_TAG = b"\x12"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def download_response(chunk: bytes, entry: FileEntry | None = None) -> bytes:
    """A serialized DownloadResponse, written by hand: the chunk is copied once, into the
    message (building the proto then serializing it copies each byte twice more, which is a
    fifth of the server's time on a download)."""
    parts: list[bytes] = []
    if entry is not None:
        encoded = file_entry(entry).SerializeToString()
        parts += [_FILE_TAG, _varint(len(encoded)), encoded]
    if chunk:
        parts += [_CHUNK_TAG, _varint(len(chunk)), chunk]
    return b"".join(parts)


def serialize_download_response(message: bytes | artifact_service_pb2.DownloadResponse) -> bytes:
    """Download's response serializer: messages arrive already encoded (`download_response`)."""
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()
