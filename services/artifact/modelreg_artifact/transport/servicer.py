"""gRPC servicer of modelreg.artifact.v1.ArtifactService: proto in, domain call, proto out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from modelreg.artifact.v1 import artifact_service_pb2 as pb
from modelreg.artifact.v1 import artifact_service_pb2_grpc as pb_grpc
from modelreg_artifact.domain.service import Artifacts
from modelreg_artifact.transport import convert
from modelreg_common.errors import InvalidArgument
from modelreg_common.usage import DOWNLOAD, UsageSink, model_version_of

Context = Any


class ArtifactServicer(pb_grpc.ArtifactServiceServicer):
    def __init__(self, artifacts: Artifacts, usage: UsageSink | None = None) -> None:
        self._a = artifacts
        self._usage = usage

    def _count_download(self, owner: str) -> None:
        # Once per call, not per chunk: usage counts downloads, not bytes.
        version = model_version_of(owner)
        if self._usage is not None and version is not None:
            self._usage.record(version, DOWNLOAD)

    async def _session_proto(self, session: Any) -> Any:
        committed = await self._a.committed_bytes(session)
        return convert.upload_session(session, committed, self._a.expire_time(session))

    async def Upload(
        self, request_iterator: AsyncIterator[pb.UploadRequest], context: Context
    ) -> pb.UploadResponse:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("message") != "header":
            raise InvalidArgument("header", "the first message of an upload must be its header")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("message") == "header":
                    raise InvalidArgument("header", "only the first message may be a header")
                yield message.chunk
            # A client that goes away ends the request stream just like a clean close; its
            # cancellation lands a moment later. Let it land here, before the domain takes the
            # bytes so far for the whole file (declared sizes guard this too).
            await asyncio.sleep(0)
            if context.cancelled():
                raise asyncio.CancelledError()

        entry = await self._a.upload(convert.upload_header(first.header), chunks())
        return pb.UploadResponse(file=convert.file_entry(entry))

    async def CreateUploadSession(
        self, request: pb.CreateUploadSessionRequest, context: Context
    ) -> pb.CreateUploadSessionResponse:
        session = await self._a.create_session(
            request.owner,
            request.path,
            request.media_type,
            request.expected_size_bytes,
            request.expected_digest,
        )
        return pb.CreateUploadSessionResponse(upload_session=await self._session_proto(session))

    async def GetUploadSession(
        self, request: pb.GetUploadSessionRequest, context: Context
    ) -> pb.GetUploadSessionResponse:
        session = await self._a.get_session(request.name)
        return pb.GetUploadSessionResponse(upload_session=await self._session_proto(session))

    async def CancelUpload(
        self, request: pb.CancelUploadRequest, context: Context
    ) -> pb.CancelUploadResponse:
        await self._a.cancel(request.name)
        return pb.CancelUploadResponse()

    # The generated base promises DownloadResponse messages; these go out serialized already
    # (`convert.download_response`), and `app.method_handlers` gives Download the serializer
    # that passes them through.
    async def Download(  # type: ignore[override]
        self, request: pb.DownloadRequest, context: Context
    ) -> AsyncIterator[bytes]:
        entry, chunks = await self._a.open_download(
            request.owner, request.path, request.offset, request.length
        )
        self._count_download(request.owner)
        first = True
        async for chunk in chunks:
            if first:
                yield convert.download_response(chunk, entry)
                first = False
            else:
                yield convert.download_response(chunk)
        if first:
            yield convert.download_response(b"", entry)

    async def GetFile(self, request: pb.GetFileRequest, context: Context) -> pb.GetFileResponse:
        entry = await self._a.get_file(request.owner, request.path)
        return pb.GetFileResponse(file=convert.file_entry(entry))

    async def ListFiles(
        self, request: pb.ListFilesRequest, context: Context
    ) -> pb.ListFilesResponse:
        files, token = await self._a.list_files(
            request.owner, request.page_size, request.page_token
        )
        return pb.ListFilesResponse(
            files=[convert.file_entry(f) for f in files], next_page_token=token
        )

    async def DeleteFile(
        self, request: pb.DeleteFileRequest, context: Context
    ) -> pb.DeleteFileResponse:
        await self._a.delete_file(request.owner, request.path)
        return pb.DeleteFileResponse()

    async def GetManifest(
        self, request: pb.GetManifestRequest, context: Context
    ) -> pb.GetManifestResponse:
        return pb.GetManifestResponse(
            manifest=convert.manifest(await self._a.get_manifest(request.owner))
        )

    async def SealManifest(
        self, request: pb.SealManifestRequest, context: Context
    ) -> pb.SealManifestResponse:
        return pb.SealManifestResponse(manifest=convert.manifest(await self._a.seal(request.owner)))

    async def CreateUploadUrls(
        self, request: pb.CreateUploadUrlsRequest, context: Context
    ) -> pb.CreateUploadUrlsResponse:
        session, urls, expire = await self._a.create_upload_urls(
            request.owner, request.path, request.media_type, request.size_bytes, request.digest
        )
        return pb.CreateUploadUrlsResponse(
            upload_session=await self._session_proto(session),
            parts=[
                pb.PartUrl(part_number=n, url=url, offset=offset, size_bytes=size)
                for n, url, offset, size in urls
            ],
            expire_time=convert.timestamp(expire),
        )

    async def CompleteUpload(
        self, request: pb.CompleteUploadRequest, context: Context
    ) -> pb.CompleteUploadResponse:
        entry = await self._a.complete_upload(
            request.upload_session, [(p.part_number, p.etag) for p in request.parts]
        )
        return pb.CompleteUploadResponse(file=convert.file_entry(entry))

    async def CreateDownloadUrl(
        self, request: pb.CreateDownloadUrlRequest, context: Context
    ) -> pb.CreateDownloadUrlResponse:
        url, expire = await self._a.create_download_url(request.owner, request.path)
        self._count_download(request.owner)
        return pb.CreateDownloadUrlResponse(url=url, expire_time=convert.timestamp(expire))
