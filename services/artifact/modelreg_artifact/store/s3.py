"""The S3 backend (aiobotocore): multipart uploads part by part, ranged GETs, presigned URLs.
Connection failures and server errors become UNAVAILABLE; the caller cleans up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from modelreg_artifact.domain.models import Part
from modelreg_artifact.settings import S3Settings
from modelreg_common.errors import InvalidArgument, Unavailable
from modelreg_common.memory import release_free_memory

# Part bytes sent between two returns of free heap pages to the OS.
TRIM_EVERY_BYTES = 64 * 1024 * 1024

_CLIENT_PART_ERRORS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "NoSuchUpload"}


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _CLIENT_PART_ERRORS:
            raise InvalidArgument(
                "parts", f"S3 refused the parts: {code}: {error.get('Message', '')}"
            ) from exc
        raise Unavailable(f"S3 {what} failed: {code or exc}", backend="s3") from exc
    except (BotoConnectionError, HTTPClientError, BotoCoreError, OSError) as exc:
        raise Unavailable(f"S3 {what} failed: {exc}", backend="s3") from exc


class _PartBodies:
    """Part bodies kept for the next parts: a new multi-MiB buffer per part would leave glibc
    a heap that fragments, and the server's RSS grew with the file's size (W4, 2 GiB)."""

    def __init__(self, keep: int) -> None:
        self._free: list[bytearray] = []
        self._keep = keep

    def take(self, size: int) -> bytearray:
        for i, body in enumerate(self._free):
            if len(body) == size:
                return self._free.pop(i)
        return bytearray(size)

    def give(self, body: bytearray) -> None:
        # Whole parts only (S3's minimum part is 5 MiB): a file's short last part is one-off.
        if len(body) >= 5 * 1024 * 1024 and len(self._free) < self._keep:
            self._free.append(body)


class S3Backend:
    name = "s3"
    supports_presigned = True

    def __init__(self, settings: S3Settings, keep_part_bodies: int = 4) -> None:
        if not settings.bucket:
            raise ValueError("the S3 backend needs a bucket (MODELREG_ARTIFACT_S3__BUCKET)")
        self._settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._bodies = _PartBodies(keep_part_bodies)
        self._since_trim = 0

    @property
    def bucket(self) -> str:
        return self._settings.bucket

    def key(self, key: str) -> str:
        return f"{self._settings.prefix}{key}"

    async def start(self) -> None:
        s = self._settings
        config = AioConfig(
            s3={
                "addressing_style": "path" if s.path_style else "auto",
                # The service sha256es every byte itself and verifies it end to end; signing
                # each part's payload would be a second full hash pass on the event loop.
                "payload_signing_enabled": s.sign_payload,
            },
            max_pool_connections=s.max_connections,
            connect_timeout=s.connect_timeout_seconds,
            read_timeout=s.read_timeout_seconds,
            retries={"max_attempts": s.max_attempts, "mode": "standard"},
            signature_version="s3v4",
            # The service hashes every byte itself (sha256); botocore's default CRC32 of each
            # part would be a second pass over the data for nothing.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        kwargs: dict[str, Any] = {"region_name": s.region, "config": config}
        if s.endpoint_url:
            kwargs["endpoint_url"] = s.endpoint_url
        if s.access_key_id:
            kwargs["aws_access_key_id"] = s.access_key_id
        if s.secret_access_key is not None:
            kwargs["aws_secret_access_key"] = s.secret_access_key.get_secret_value()
        if s.session_token is not None:
            kwargs["aws_session_token"] = s.session_token.get_secret_value()
        self._client = await self._stack.enter_async_context(
            get_session().create_client("s3", **kwargs)
        )

    async def stop(self) -> None:
        await self._stack.aclose()

    async def begin(self, key: str) -> str:
        with _s3_errors("CreateMultipartUpload"):
            response = await self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key(key)
            )
        return str(response["UploadId"])

    async def write_part(
        self, key: str, upload_id: str, number: int, offset: int, data: Sequence[bytes | memoryview]
    ) -> str:
        body = self._bodies.take(sum(len(d) for d in data))
        position = 0
        for piece in data:
            body[position : position + len(piece)] = piece
            position += len(piece)
        if isinstance(data, list):
            # Drop the received chunks now: only the copy needs to live until S3 acks.
            data.clear()
        # A bytearray body goes out as it is; botocore wraps `bytes` in a BytesIO that aiohttp
        # then reads 64 KiB at a time through the thread pool (CPU, and every worker thread's
        # malloc arena holding freed buffers).
        with _s3_errors("UploadPart"):
            response = await self._client.upload_part(
                Bucket=self.bucket,
                Key=self.key(key),
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )
        # Reused only after a clean answer: a request that failed or was cancelled might still
        # be reading it.
        self._bodies.give(body)
        self._since_trim += len(body)
        if self._since_trim >= TRIM_EVERY_BYTES:
            # aiohttp's socket buffers and the received messages still fragment the heap; its
            # resident size grew with the file (W4: +120 MiB at 2 GiB) until trimmed now and
            # then (one trim per 64 MiB costs about a millisecond).
            self._since_trim = 0
            await asyncio.to_thread(release_free_memory)
        return str(response["ETag"])

    async def complete(
        self, key: str, upload_id: str, parts: Sequence[Part], size_bytes: int
    ) -> None:
        with _s3_errors("CompleteMultipartUpload"):
            await self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key(key),
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
                },
            )

    async def abort(self, key: str, upload_id: str) -> None:
        if upload_id:
            try:
                with _s3_errors("AbortMultipartUpload"):
                    await self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=self.key(key), UploadId=upload_id
                    )
            except InvalidArgument:
                pass  # NoSuchUpload: already completed or aborted
        with _s3_errors("DeleteObject"):
            await self._client.delete_object(Bucket=self.bucket, Key=self.key(key))

    async def read(
        self, key: str, offset: int, length: int, chunk_bytes: int
    ) -> AsyncIterator[bytes]:
        if length <= 0:
            return
        with _s3_errors("GetObject"):
            response = await self._client.get_object(
                Bucket=self.bucket, Key=self.key(key), Range=f"bytes={offset}-{offset + length - 1}"
            )
        body = response["Body"]
        try:
            # aiohttp hands out what it has buffered (tens of KiB); gather full chunks for
            # fewer, larger messages, joined once (a bytearray would cost a second copy).
            pieces: list[bytes] = []
            have = 0
            while True:
                with _s3_errors("GetObject"):
                    data = await body.read(chunk_bytes - have)
                if not data:
                    break
                pieces.append(data)
                have += len(data)
                if have >= chunk_bytes:
                    chunk = b"".join(pieces)
                    pieces, have = [], 0
                    yield chunk
            if pieces:
                yield b"".join(pieces)
        finally:
            body.close()

    async def size_of(self, key: str) -> int:
        with _s3_errors("HeadObject"):
            response = await self._client.head_object(Bucket=self.bucket, Key=self.key(key))
        return int(response["ContentLength"])

    async def presign_part(self, key: str, upload_id: str, number: int, ttl: int) -> str:
        with _s3_errors("presign"):
            url = await self._client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.key(key),
                    "UploadId": upload_id,
                    "PartNumber": number,
                },
                ExpiresIn=ttl,
            )
        return str(url)

    async def presign_get(self, key: str, ttl: int) -> str:
        with _s3_errors("presign"):
            url = await self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.key(key)}, ExpiresIn=ttl
            )
        return str(url)
