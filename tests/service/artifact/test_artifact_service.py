"""The artifact service over a real channel, real PostgreSQL and real SeaweedFS (or a local
directory): round trips, ranges, resume, verification, cleanup, dedup, sealing, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from modelreg.artifact.transfer import download_file, upload_file
from modelreg.artifact.v1 import artifact_service_pb2 as pb
from modelreg_artifact.domain.models import manifest_digest
from testkit import error_details, eventually

from .conftest import MIB, Harness, StartArtifacts

OWNER = "models/fraud/versions/1"


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def requests(
    header: pb.UploadHeader, data: bytes, chunk: int = MIB
) -> AsyncIterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=header)
    for i in range(0, len(data), chunk):
        yield pb.UploadRequest(chunk=data[i : i + chunk])


async def put(
    h: Harness, data: bytes, *, owner: str = OWNER, path: str = "model.bin", **header: Any
) -> Any:
    response = await h.stub.Upload(
        requests(pb.UploadHeader(owner=owner, path=path, **header), data)
    )
    return response.file


async def get(h: Harness, *, owner: str = OWNER, path: str = "model.bin", **ranges: Any) -> bytes:
    parts = []
    async for message in h.stub.Download(pb.DownloadRequest(owner=owner, path=path, **ranges)):
        parts.append(message.chunk)
    return b"".join(parts)


async def resume(h: Harness, name: str, offset: int, rest: bytes) -> pb.UploadResponse:
    """Resume once the server has let go of the dropped stream (it refuses a second writer,
    and a refusal while the client is still sending surfaces as a transport error)."""

    async def idle() -> bool:
        reply = await h.stub.GetUploadSession(pb.GetUploadSessionRequest(name=name))
        return not reply.upload_session.writing

    await eventually(idle)
    response: pb.UploadResponse = await h.stub.Upload(
        requests(pb.UploadHeader(upload_session=name, offset=offset), rest)
    )
    return response


async def committed(h: Harness, name: str) -> int:
    reply = await h.stub.GetUploadSession(pb.GetUploadSessionRequest(name=name))
    return int(reply.upload_session.committed_bytes)


def assert_error(
    err: pytest.ExceptionInfo[aio.AioRpcError], code: grpc.StatusCode, reason: str
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    assert err.value.code() == code, err.value.details()
    got_reason, metadata, violations = error_details(err.value)
    assert got_reason == reason
    return metadata, violations


# -- round trips --------------------------------------------------------------------------


async def test_round_trip_with_client_helpers_verifies_digest(
    artifacts: Harness, tmp_path: Path
) -> None:
    data = os.urandom(3 * MIB + 123)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    entry = await upload_file(artifacts.stub, OWNER, "weights/model.bin", source)
    assert entry.digest == digest_of(data)
    assert entry.size_bytes == len(data)
    assert entry.media_type == "application/octet-stream"

    target = tmp_path / "copy.bin"
    downloaded = await download_file(artifacts.stub, OWNER, "weights/model.bin", target)
    assert downloaded.digest == entry.digest
    assert target.read_bytes() == data

    got = await artifacts.stub.GetFile(pb.GetFileRequest(owner=OWNER, path="weights/model.bin"))
    assert got.file.digest == entry.digest


async def test_multipart_upload_spans_several_parts(artifacts: Harness) -> None:
    # Part size is 5 MiB in these tests: 12 MiB is three parts, the last one short.
    data = os.urandom(12 * MIB + 7)
    entry = await put(artifacts, data, expected_digest=digest_of(data))
    assert entry.size_bytes == len(data)
    assert await get(artifacts) == data
    # A range across the boundary of parts 1 and 2.
    assert await get(artifacts, offset=5 * MIB - 10, length=20) == data[5 * MIB - 10 : 5 * MIB + 10]


async def test_empty_file_round_trips(artifacts: Harness) -> None:
    entry = await put(artifacts, b"", path="empty.txt", media_type="text/plain")
    assert entry.digest == digest_of(b"")
    assert entry.media_type == "text/plain"
    messages = [
        m async for m in artifacts.stub.Download(pb.DownloadRequest(owner=OWNER, path="empty.txt"))
    ]
    assert len(messages) == 1
    assert messages[0].file.digest == digest_of(b"")
    assert messages[0].chunk == b""


async def test_ranged_reads(artifacts: Harness) -> None:
    data = os.urandom(2 * MIB)
    await put(artifacts, data)
    assert await get(artifacts, offset=100, length=1000) == data[100:1100]
    assert await get(artifacts, offset=MIB) == data[MIB:]
    assert await get(artifacts, offset=len(data) - 5, length=100) == data[-5:]
    assert await get(artifacts, offset=len(data)) == b""


@pytest.mark.parametrize(
    ("ranges", "field"),
    [({"offset": -1}, "offset"), ({"length": -5}, "length"), ({"offset": 10**9}, "offset")],
)
async def test_bad_ranges_are_invalid_argument(
    start_artifacts: StartArtifacts, ranges: dict[str, Any], field: str
) -> None:
    h = await start_artifacts("local")
    await put(h, b"hello")
    with pytest.raises(aio.AioRpcError) as err:
        await get(h, **ranges)
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == field


async def test_download_of_missing_file_is_not_found(artifacts: Harness) -> None:
    with pytest.raises(aio.AioRpcError) as err:
        await get(artifacts, path="nope.bin")
    assert_error(err, grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND")


# -- resumable uploads ---------------------------------------------------------------------


async def test_resume_after_a_dropped_stream(artifacts: Harness) -> None:
    data = os.urandom(11 * MIB)
    created = await artifacts.stub.CreateUploadSession(
        pb.CreateUploadSessionRequest(
            owner=OWNER, path="big.bin", expected_size_bytes=len(data),
            expected_digest=digest_of(data),
        )
    )  # fmt: skip
    name = created.upload_session.name
    assert created.upload_session.committed_bytes == 0
    assert created.upload_session.part_size_bytes == 5 * MIB

    stall = asyncio.Event()

    async def first_attempt() -> AsyncIterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(upload_session=name))
        for i in range(0, 7 * MIB, MIB):
            yield pb.UploadRequest(chunk=data[i : i + MIB])
        await stall.wait()  # the connection "hangs" until the client gives up

    call = artifacts.stub.Upload(first_attempt())
    await eventually(lambda: _at_least(committed(artifacts, name), 5 * MIB))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    done = await committed(artifacts, name)
    assert done == 5 * MIB  # one whole part; the 2 MiB after it were not committed

    # A resume from the wrong offset is refused and says where to resume.
    async def header_then_wait() -> AsyncIterator[pb.UploadRequest]:
        # Waits for the server's answer instead of racing it with more writes.
        yield pb.UploadRequest(header=pb.UploadHeader(upload_session=name, offset=1))
        await asyncio.Event().wait()

    with pytest.raises(aio.AioRpcError) as err:
        await artifacts.stub.Upload(header_then_wait())
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")

    response = await resume(artifacts, name, done, data[done:])
    assert response.file.digest == digest_of(data)
    assert await get(artifacts, path="big.bin") == data
    assert await artifacts.sql("SELECT id FROM upload_sessions") == []


async def test_resume_without_the_cached_hash_reads_back_and_verifies(
    start_artifacts: StartArtifacts,
) -> None:
    h = await start_artifacts("local")
    data = os.urandom(8 * MIB)
    created = await h.stub.CreateUploadSession(
        pb.CreateUploadSessionRequest(owner=OWNER, path="x.bin", expected_digest=digest_of(data))
    )
    name = created.upload_session.name
    stall = asyncio.Event()

    async def first() -> AsyncIterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(upload_session=name))
        yield pb.UploadRequest(chunk=data[: 5 * MIB])
        await stall.wait()

    # As if the resume reached another replica (or a restarted process): no running hash.
    h.component.artifacts._hashers = _Forgetful()  # type: ignore[assignment]
    call = h.stub.Upload(first())
    await eventually(lambda: _at_least(committed(h, name), 5 * MIB))
    call.cancel()
    response = await resume(h, name, 5 * MIB, data[5 * MIB :])
    assert response.file.digest == digest_of(data)


# -- verification and cleanup --------------------------------------------------------------


async def test_digest_mismatch_leaves_nothing(artifacts: Harness) -> None:
    data = os.urandom(6 * MIB)
    with pytest.raises(aio.AioRpcError) as err:
        await put(artifacts, data, expected_digest=digest_of(b"something else"))
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == "expected_digest"
    await artifacts.assert_nothing_left()


@pytest.mark.parametrize("declared", [10, 10 * MIB])
async def test_size_mismatch_leaves_nothing(artifacts: Harness, declared: int) -> None:
    with pytest.raises(aio.AioRpcError) as err:
        await put(artifacts, os.urandom(MIB), expected_size_bytes=declared)
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == "expected_size_bytes"
    await artifacts.assert_nothing_left()


async def test_cancelled_upload_leaves_nothing_after_gc(artifacts: Harness) -> None:
    data = os.urandom(7 * MIB)
    stall = asyncio.Event()

    async def hang() -> AsyncIterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(owner=OWNER, path="x.bin"))
        for i in range(0, len(data), MIB):
            yield pb.UploadRequest(chunk=data[i : i + MIB])
        await stall.wait()

    call = artifacts.stub.Upload(hang())

    async def some_part_stored() -> bool:
        return bool(await artifacts.sql("SELECT 1 FROM upload_parts"))

    async def session_gone() -> bool:
        return not await artifacts.sql("SELECT 1 FROM upload_sessions")

    await eventually(some_part_stored)
    call.cancel()
    await eventually(session_gone)
    report = await artifacts.component.collect_garbage()
    assert report.collected_blobs == 0
    await artifacts.assert_nothing_left()
    files = await artifacts.stub.ListFiles(pb.ListFilesRequest(owner=OWNER))
    assert list(files.files) == []


async def test_gc_discards_stale_resumable_sessions(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("s3", upload_session_ttl_seconds=0)
    created = await h.stub.CreateUploadSession(
        pb.CreateUploadSessionRequest(owner=OWNER, path="x.bin")
    )
    assert await h.pending_multipart() != []
    report = await h.component.collect_garbage()
    assert report.expired_sessions == 1
    await h.assert_nothing_left()
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.GetUploadSession(pb.GetUploadSessionRequest(name=created.upload_session.name))
    assert_error(err, grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND")


async def test_cancel_upload_discards_it(artifacts: Harness) -> None:
    created = await artifacts.stub.CreateUploadSession(
        pb.CreateUploadSessionRequest(owner=OWNER, path="x.bin")
    )
    await artifacts.stub.CancelUpload(pb.CancelUploadRequest(name=created.upload_session.name))
    await artifacts.assert_nothing_left()


async def test_identical_files_are_stored_once(artifacts: Harness) -> None:
    data = os.urandom(MIB)
    a = await put(artifacts, data, owner="models/a/versions/1", path="m.bin")
    b = await put(artifacts, data, owner="experiments/e1/runs/r1", path="other/m.bin")
    assert a.digest == b.digest
    assert len(await artifacts.sql("SELECT digest FROM blobs")) == 1
    assert len(await artifacts.stored_objects()) == 1
    assert await get(artifacts, owner="experiments/e1/runs/r1", path="other/m.bin") == data


async def test_unreferenced_blob_is_collected_with_events(artifacts: Harness) -> None:
    data = os.urandom(MIB)
    entry = await put(artifacts, data)
    await artifacts.stub.DeleteFile(pb.DeleteFileRequest(owner=OWNER, path="model.bin"))
    report = await artifacts.component.collect_garbage()
    assert report.collected_blobs == 1
    await artifacts.assert_nothing_left()
    events = await artifacts.sql("SELECT type, subject, data FROM outbox ORDER BY seq")
    assert [(e["type"], e["subject"]) for e in events] == [
        ("artifact.uploaded", OWNER),
        ("artifact.deleted", OWNER),
        ("artifact.gc_collected", entry.digest),
    ]


async def test_blob_within_grace_period_is_kept(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("local", blob_grace_seconds=3600)
    await put(h, b"abc")
    await h.stub.DeleteFile(pb.DeleteFileRequest(owner=OWNER, path="model.bin"))
    report = await h.component.collect_garbage()
    assert report.collected_blobs == 0
    assert len(await h.stored_objects()) == 1


# -- manifests and immutability ------------------------------------------------------------


async def test_seal_freezes_the_owner_and_is_idempotent(artifacts: Harness) -> None:
    await put(artifacts, b"one", path="a.txt")
    await put(artifacts, b"two", path="dir/b.txt")
    sealed = (await artifacts.stub.SealManifest(pb.SealManifestRequest(owner=OWNER))).manifest
    expected = manifest_digest(
        [("a.txt", digest_of(b"one"), 3), ("dir/b.txt", digest_of(b"two"), 3)]
    )
    assert sealed.digest == expected
    assert (sealed.file_count, sealed.total_size_bytes, sealed.sealed) == (2, 6, True)
    again = (await artifacts.stub.SealManifest(pb.SealManifestRequest(owner=OWNER))).manifest
    assert again.digest == expected
    got = (await artifacts.stub.GetManifest(pb.GetManifestRequest(owner=OWNER))).manifest
    assert got.digest == expected
    assert got.sealed

    with pytest.raises(aio.AioRpcError) as err:
        await put(artifacts, b"three", path="c.txt")
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")
    with pytest.raises(aio.AioRpcError) as err:
        await put(artifacts, b"changed", path="a.txt")
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")
    with pytest.raises(aio.AioRpcError) as err:
        await artifacts.stub.DeleteFile(pb.DeleteFileRequest(owner=OWNER, path="a.txt"))
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")
    with pytest.raises(aio.AioRpcError) as err:
        await artifacts.stub.CreateUploadSession(
            pb.CreateUploadSessionRequest(owner=OWNER, path="d.txt")
        )
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")
    assert await get(artifacts, path="a.txt") == b"one"


async def test_upload_in_progress_when_sealed_is_refused_at_the_end(
    start_artifacts: StartArtifacts,
) -> None:
    h = await start_artifacts("local")
    created = await h.stub.CreateUploadSession(
        pb.CreateUploadSessionRequest(owner=OWNER, path="late.bin")
    )
    await h.stub.SealManifest(pb.SealManifestRequest(owner=OWNER))
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.Upload(
            requests(pb.UploadHeader(upload_session=created.upload_session.name), b"late")
        )
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")
    files = await h.stub.ListFiles(pb.ListFilesRequest(owner=OWNER))
    assert list(files.files) == []


async def test_empty_manifest_seals(artifacts: Harness) -> None:
    sealed = (await artifacts.stub.SealManifest(pb.SealManifestRequest(owner=OWNER))).manifest
    assert sealed.digest == digest_of(b"")
    assert sealed.file_count == 0


async def test_list_files_pages_with_tokens(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("local")
    paths = [f"f{i:02d}.txt" for i in range(7)]
    for p in paths:
        await put(h, p.encode(), path=p)
    seen: list[str] = []
    token = ""
    while True:
        page = await h.stub.ListFiles(
            pb.ListFilesRequest(owner=OWNER, page_size=3, page_token=token)
        )
        seen += [f.path for f in page.files]
        token = page.next_page_token
        if not token:
            break
    assert seen == paths
    first = await h.stub.ListFiles(pb.ListFilesRequest(owner=OWNER, page_size=3))
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.ListFiles(
            pb.ListFilesRequest(owner="models/other/versions/1", page_token=first.next_page_token)
        )
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == "page_token"


async def test_reupload_replaces_the_entry(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("local")
    await put(h, b"v1")
    entry = await put(h, b"v2")
    assert entry.digest == digest_of(b"v2")
    assert await get(h) == b"v2"
    manifest = (await h.stub.GetManifest(pb.GetManifestRequest(owner=OWNER))).manifest
    assert manifest.file_count == 1


# -- bad input ------------------------------------------------------------------------------

BAD_PATHS = [
    "",
    "/etc/passwd",
    "../escape",
    "a/../../b",
    "a/./b",
    "a\\b",
    "a\x00b",
    "a//b",
    "dir/",
    "x" * 256,
    "/".join(["abcdefgh"] * 120),
    "line\nbreak",
]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_bad_paths_are_rejected_naming_the_field(
    start_artifacts: StartArtifacts, path: str
) -> None:
    h = await start_artifacts("local")
    with pytest.raises(aio.AioRpcError) as err:
        await put(h, b"x", path=path)
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == "header.path"
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.GetFile(pb.GetFileRequest(owner=OWNER, path=path))
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == "path"
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.CreateUploadSession(pb.CreateUploadSessionRequest(owner=OWNER, path=path))
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == "path"
    await h.assert_nothing_left()


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ({"owner": "models/x"}, "header.owner"),
        ({"owner": "models/x/versions/0"}, "header.owner"),
        ({"owner": "experiments/e"}, "header.owner"),
        ({"owner": "buckets/b"}, "header.owner"),
        ({"expected_digest": "md5:abc"}, "header.expected_digest"),
        ({"expected_digest": "sha256:" + "A" * 64}, "header.expected_digest"),
        ({"expected_size_bytes": -1}, "header.expected_size_bytes"),
        ({"media_type": "not a type"}, "header.media_type"),
        ({"offset": 5}, "header.offset"),
        ({"upload_session": "uploads/nope"}, "header.upload_session"),
    ],
)
async def test_bad_headers_are_rejected(
    start_artifacts: StartArtifacts, header: dict[str, Any], field: str
) -> None:
    h = await start_artifacts("local")
    values = {"owner": OWNER, "path": "m.bin", **header}
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.Upload(requests(pb.UploadHeader(**values), b"x"))
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == field
    await h.assert_nothing_left()


async def test_stream_must_start_with_a_header(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("local")

    async def chunks_only() -> AsyncIterator[pb.UploadRequest]:
        yield pb.UploadRequest(chunk=b"abc")

    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.Upload(chunks_only())
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == "header"

    async def two_headers() -> AsyncIterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(owner=OWNER, path="a"))
        yield pb.UploadRequest(header=pb.UploadHeader(owner=OWNER, path="b"))

    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.Upload(two_headers())
    assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    await h.assert_nothing_left()


# -- limits -----------------------------------------------------------------------------------


async def test_file_size_limit_is_resource_exhausted(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("local", max_file_bytes=MIB)
    with pytest.raises(aio.AioRpcError) as err:
        await put(h, b"", expected_size_bytes=MIB + 1)
    metadata, _ = assert_error(err, grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    assert metadata["limit"] == "max_file_bytes"
    # Undeclared size: refused while streaming, nothing kept.
    with pytest.raises(aio.AioRpcError) as err:
        await put(h, os.urandom(2 * MIB))
    assert_error(err, grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    await h.assert_nothing_left()


async def test_owner_size_limit_is_resource_exhausted(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("local", max_owner_bytes=MIB)
    await put(h, os.urandom(MIB - 10), path="a.bin")
    with pytest.raises(aio.AioRpcError) as err:
        await put(h, os.urandom(100), path="b.bin")
    metadata, _ = assert_error(err, grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    assert metadata["limit"] == "max_owner_bytes"
    # Another owner has its own budget.
    await put(h, os.urandom(100), owner="models/fraud/versions/2", path="b.bin")


# -- presigned URLs --------------------------------------------------------------------------


async def test_presigned_urls_need_s3(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("local")
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.CreateUploadUrls(
            pb.CreateUploadUrlsRequest(owner=OWNER, path="a", size_bytes=1, digest=digest_of(b"a"))
        )
    metadata, _ = assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")
    assert metadata["backend"] == "local"
    assert "S3" in (err.value.details() or "")
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.CreateDownloadUrl(pb.CreateDownloadUrlRequest(owner=OWNER, path="a"))
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")


async def test_presigned_upload_and_download(start_artifacts: StartArtifacts) -> None:
    import aiohttp

    h = await start_artifacts("s3")
    data = os.urandom(7 * MIB)
    urls = await h.stub.CreateUploadUrls(
        pb.CreateUploadUrlsRequest(
            owner=OWNER, path="direct.bin", size_bytes=len(data), digest=digest_of(data)
        )
    )
    assert [p.part_number for p in urls.parts] == [1, 2]
    completed = []
    async with aiohttp.ClientSession() as http:
        for part in urls.parts:
            body = data[part.offset : part.offset + part.size_bytes]
            async with http.put(part.url, data=body) as response:
                assert response.status == 200, await response.text()
                completed.append(
                    pb.CompletedPart(part_number=part.part_number, etag=response.headers["ETag"])
                )
        # The file does not exist before CompleteUpload.
        assert list((await h.stub.ListFiles(pb.ListFilesRequest(owner=OWNER))).files) == []
        done = await h.stub.CompleteUpload(
            pb.CompleteUploadRequest(upload_session=urls.upload_session.name, parts=completed)
        )
        assert done.file.digest == digest_of(data)
        link = await h.stub.CreateDownloadUrl(
            pb.CreateDownloadUrlRequest(owner=OWNER, path="direct.bin")
        )
        async with http.get(link.url) as response:
            assert response.status == 200
            assert await response.read() == data


async def test_presigned_upload_with_wrong_bytes_leaves_nothing(
    start_artifacts: StartArtifacts,
) -> None:
    import aiohttp

    h = await start_artifacts("s3")
    data = os.urandom(1000)
    urls = await h.stub.CreateUploadUrls(
        pb.CreateUploadUrlsRequest(
            owner=OWNER, path="d.bin", size_bytes=len(data), digest=digest_of(data)
        )
    )
    async with (
        aiohttp.ClientSession() as http,
        http.put(urls.parts[0].url, data=b"y" * 1000) as response,
    ):
        etag = response.headers["ETag"]
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.CompleteUpload(
            pb.CompleteUploadRequest(
                upload_session=urls.upload_session.name,
                parts=[pb.CompletedPart(part_number=1, etag=etag)],
            )
        )
    _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert violations[0][0] == "expected_digest"
    await h.assert_nothing_left()


async def test_complete_upload_checks_parts(start_artifacts: StartArtifacts) -> None:
    h = await start_artifacts("s3")
    urls = await h.stub.CreateUploadUrls(
        pb.CreateUploadUrlsRequest(
            owner=OWNER, path="d.bin", size_bytes=10, digest=digest_of(b"0123456789")
        )
    )
    name = urls.upload_session.name
    for parts, field in [
        ([], "parts"),
        ([pb.CompletedPart(part_number=2, etag="x")], "parts"),
        ([pb.CompletedPart(part_number=1, etag="")], "parts[0].etag"),
    ]:
        with pytest.raises(aio.AioRpcError) as err:
            await h.stub.CompleteUpload(pb.CompleteUploadRequest(upload_session=name, parts=parts))
        _, violations = assert_error(err, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
        assert violations[0][0] == field


# -- S3 outage ---------------------------------------------------------------------------------


async def test_s3_outage_is_unavailable_with_nothing_half_written(
    start_artifacts: StartArtifacts, tmp_path: Path
) -> None:
    from modelreg_common.local_s3 import LocalS3

    own = LocalS3(tmp_path / "s3")
    await asyncio.to_thread(own.start)
    try:
        h = await start_artifacts("s3", s3=own)
        await put(h, b"before the outage", path="ok.bin")
        await asyncio.to_thread(own.stop)
        with pytest.raises(aio.AioRpcError) as err:
            await put(h, os.urandom(MIB), path="during.bin")
        metadata, _ = assert_error(err, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
        assert metadata["backend"] == "s3"
        with pytest.raises(aio.AioRpcError) as err:
            await get(h, path="ok.bin")
        assert_error(err, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
        files = await h.stub.ListFiles(pb.ListFilesRequest(owner=OWNER))
        assert [f.path for f in files.files] == ["ok.bin"]
        assert await h.sql("SELECT id FROM upload_sessions") == []
    finally:
        await asyncio.to_thread(own.stop)


async def _at_least(value: Awaitable[int], minimum: int) -> bool:
    return await value >= minimum


class _Forgetful:
    def put(self, *args: object) -> None:
        return None

    def take(self, *args: object) -> None:
        return None


async def test_resumable_upload_ended_early_keeps_whole_parts(artifacts: Harness) -> None:
    data = os.urandom(8 * MIB)
    created = await artifacts.stub.CreateUploadSession(
        pb.CreateUploadSessionRequest(owner=OWNER, path="p.bin", expected_size_bytes=len(data))
    )
    name = created.upload_session.name
    with pytest.raises(aio.AioRpcError) as err:
        await artifacts.stub.Upload(requests(pb.UploadHeader(upload_session=name), data[: 6 * MIB]))
    metadata, _ = assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")
    assert metadata["committed_bytes"] == str(5 * MIB)
    assert await committed(artifacts, name) == 5 * MIB
    response = await resume(artifacts, name, 5 * MIB, data[5 * MIB :])
    assert response.file.digest == digest_of(data)


async def test_gc_skips_a_blob_an_upload_is_finalizing(start_artifacts: StartArtifacts) -> None:
    import asyncpg

    h = await start_artifacts("local")
    entry = await put(h, b"shared bytes")
    await h.stub.DeleteFile(pb.DeleteFileRequest(owner=OWNER, path="model.bin"))
    # A concurrent upload of the same bytes holds the blob row while it adds its reference
    # (finalize's INSERT ... ON CONFLICT DO UPDATE): the collector must pass it by.
    conn = await asyncpg.connect(h.dsn, server_settings={"search_path": "artifact"})
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE blobs SET touched_at = touched_at WHERE digest = $1", entry.digest
            )
            report = await h.component.collect_garbage()
            assert report.collected_blobs == 0
    finally:
        await conn.close()
    assert len(await h.stored_objects()) == 1
    # Re-uploaded (referenced again) before the collector ran: kept.
    await put(h, b"shared bytes", path="again.bin")
    report = await h.component.collect_garbage()
    assert report.collected_blobs == 0
    assert await get(h, path="again.bin") == b"shared bytes"


async def test_resumable_helper_round_trip_and_sealed_owner_is_final(
    start_artifacts: StartArtifacts, tmp_path: Path
) -> None:
    from modelreg.artifact.transfer import upload_file_resumable

    h = await start_artifacts("local")
    data = os.urandom(6 * MIB)
    source = tmp_path / "src.bin"
    source.write_bytes(data)
    entry = await upload_file_resumable(h.stub, OWNER, "r.bin", source)
    assert entry.digest == digest_of(data)
    created = await h.stub.CreateUploadSession(
        pb.CreateUploadSessionRequest(owner=OWNER, path="late.bin")
    )
    await h.stub.SealManifest(pb.SealManifestRequest(owner=OWNER))
    with pytest.raises(aio.AioRpcError) as err:
        await h.stub.Upload(
            requests(pb.UploadHeader(upload_session=created.upload_session.name), b"x")
        )
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")
    # Sealing is permanent: the pending upload was discarded, not kept for a resume.
    assert await h.sql("SELECT id FROM upload_sessions") == []
    with pytest.raises(aio.AioRpcError) as err:
        await upload_file_resumable(h.stub, OWNER, "later.bin", source)
    assert_error(err, grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION")


async def test_concurrent_uploads_of_the_same_bytes_store_one_blob(artifacts: Harness) -> None:
    data = os.urandom(3 * MIB)
    owners = [f"models/m{i}/versions/1" for i in range(4)]
    entries = await asyncio.gather(*(put(artifacts, data, owner=o) for o in owners))
    assert {e.digest for e in entries} == {digest_of(data)}
    assert len(await artifacts.sql("SELECT digest FROM blobs")) == 1
    # The losing copies were deleted right away, not left for the collector.
    assert await artifacts.sql("SELECT storage_key FROM doomed_objects") == []
    assert len(await artifacts.stored_objects()) == 1
    for owner in owners:
        assert await get(artifacts, owner=owner) == data


async def test_s3_outage_mid_upload_leaves_no_file_and_queues_cleanup(
    start_artifacts: StartArtifacts, tmp_path: Path
) -> None:
    from modelreg_common.local_s3 import LocalS3

    own = LocalS3(tmp_path / "s3")
    await asyncio.to_thread(own.start)
    try:
        h = await start_artifacts("s3", s3=own)
        data = os.urandom(12 * MIB)
        s3_down = asyncio.Event()

        async def stream() -> AsyncIterator[pb.UploadRequest]:
            yield pb.UploadRequest(header=pb.UploadHeader(owner=OWNER, path="mid.bin"))
            for i in range(0, 6 * MIB, MIB):
                yield pb.UploadRequest(chunk=data[i : i + MIB])
            await s3_down.wait()
            for i in range(6 * MIB, len(data), MIB):
                yield pb.UploadRequest(chunk=data[i : i + MIB])

        async def first_part_stored() -> bool:
            return bool(await h.sql("SELECT 1 FROM upload_parts"))

        call = h.stub.Upload(stream())
        await eventually(first_part_stored)
        await asyncio.to_thread(own.stop)
        s3_down.set()
        with pytest.raises(aio.AioRpcError) as err:
            await call
        metadata, _ = assert_error(err, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
        assert metadata["backend"] == "s3"
        assert await h.sql("SELECT 1 FROM manifest_entries") == []
        assert await h.sql("SELECT 1 FROM upload_sessions") == []
        assert await h.sql("SELECT 1 FROM blobs") == []
        # The multipart upload could not be aborted while S3 was down: it stays queued, and
        # the collector retries it.
        doomed = await h.sql("SELECT storage_key, backend_upload_id FROM doomed_objects")
        assert len(doomed) == 1
        assert doomed[0]["backend_upload_id"]
    finally:
        await asyncio.to_thread(own.stop)
