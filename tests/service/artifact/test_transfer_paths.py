"""The fast paths of large transfers: hand-encoded download messages, the bounded read-ahead,
a download abandoned midway, and the allocator tuning that bounds the server's memory."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from modelreg.artifact.transfer import DigestMismatch, download_file, upload_file
from modelreg.artifact.v1 import artifact_service_pb2 as pb
from modelreg_artifact.domain.models import FileEntry
from modelreg_artifact.domain.service import read_ahead
from modelreg_artifact.store.s3 import _PartBodies
from modelreg_artifact.transport import convert
from modelreg_common import memory
from modelreg_common.errors import Unavailable
from testkit import s3_client

from .conftest import MIB, Harness, StartArtifacts

OWNER = "models/fraud/versions/1"

ENTRY = FileEntry(
    owner=OWNER,
    path="weights/model.bin",
    digest="sha256:" + "ab" * 32,
    size_bytes=3 * MIB,
    media_type="application/octet-stream",
    create_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)


# -- DownloadResponse written by hand --------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 4 * MIB - 64 * 1024, 4 * MIB])
@pytest.mark.parametrize("with_entry", [False, True])
def test_hand_encoded_download_response_parses_as_the_proto(size: int, with_entry: bool) -> None:
    chunk = os.urandom(size)
    entry = ENTRY if with_entry else None
    encoded = convert.download_response(chunk, entry)
    parsed = pb.DownloadResponse.FromString(encoded)
    assert parsed.chunk == chunk
    assert parsed.HasField("file") is with_entry
    if with_entry:
        assert parsed.file == convert.file_entry(ENTRY)
    # Byte for byte what protobuf itself writes (field order, varint lengths).
    expected = pb.DownloadResponse(chunk=chunk)
    if with_entry:
        expected.file.CopyFrom(convert.file_entry(ENTRY))
    assert encoded == expected.SerializeToString()


def test_download_serializer_passes_encoded_messages_and_serializes_protos() -> None:
    encoded = convert.download_response(b"abc", ENTRY)
    assert convert.serialize_download_response(encoded) is encoded
    message = pb.DownloadResponse(chunk=b"xyz")
    assert convert.serialize_download_response(message) == message.SerializeToString()


# -- read-ahead ------------------------------------------------------------------------------------


async def test_read_ahead_keeps_order_and_fetches_at_most_depth_ahead() -> None:
    produced: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for i in range(20):
            produced.append(i)
            yield bytes([i])

    seen: list[bytes] = []
    async for chunk in read_ahead(source(), 3):
        seen.append(chunk)
        await asyncio.sleep(0.01)  # a slow sender: the fetcher runs ahead, up to its bound
        # Queued (3) plus the one the fetcher holds while it waits for room.
        assert len(produced) - len(seen) <= 4
    assert seen == [bytes([i]) for i in range(20)]


async def test_read_ahead_of_zero_reads_on_demand() -> None:
    produced: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for i in range(5):
            produced.append(i)
            yield bytes([i])

    seen = 0
    async for _ in read_ahead(source(), 0):
        seen += 1
        await asyncio.sleep(0.005)
        assert len(produced) == seen
    assert seen == 5


async def test_read_ahead_hands_on_a_backend_failure_after_the_chunks_before_it() -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"one"
        yield b"two"
        raise Unavailable("S3 GetObject failed: connection reset", backend="s3")

    seen: list[bytes] = []
    with pytest.raises(Unavailable):
        async for chunk in read_ahead(source(), 2):
            seen.append(chunk)
    assert seen == [b"one", b"two"]


async def test_read_ahead_closes_the_source_when_the_reader_stops_early() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncGenerator[bytes]:
        try:
            for i in range(1000):
                yield bytes([i % 256])
        finally:
            closed.set()

    reader = cast(AsyncGenerator[bytes], read_ahead(source(), 2))
    assert await anext(reader) == b"\x00"
    await reader.aclose()  # what a cancelled Download does to its generator
    async with asyncio.timeout(5):
        await closed.wait()


# -- over a real channel ---------------------------------------------------------------------------


async def test_download_spanning_many_chunks_round_trips_with_read_ahead(
    start_artifacts: StartArtifacts, tmp_path: Path
) -> None:
    for backend in ("local", "s3"):
        h = await start_artifacts(
            backend, download_chunk_bytes=64 * 1024, download_read_ahead_chunks=3
        )
        source = tmp_path / f"{backend}.bin"
        data = os.urandom(3 * MIB + 12_345)
        await asyncio.to_thread(source.write_bytes, data)
        entry = await upload_file(h.stub, OWNER, "model.bin", source)
        target = tmp_path / f"{backend}.out"
        got = await download_file(h.stub, OWNER, "model.bin", target)
        assert got.digest == entry.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
        assert await asyncio.to_thread(target.read_bytes) == data
        # A range that starts and ends inside chunks.
        parts = [
            m.chunk
            async for m in h.stub.Download(
                pb.DownloadRequest(owner=OWNER, path="model.bin", offset=70_000, length=200_001)
            )
        ]
        assert b"".join(parts) == data[70_000:270_001]


async def test_download_abandoned_midway_leaves_the_server_serving(artifacts: Harness) -> None:
    data = os.urandom(12 * MIB)
    await artifacts.stub.Upload(_requests(data))
    call = artifacts.stub.Download(pb.DownloadRequest(owner=OWNER, path="model.bin"))
    first = await call.read()
    assert first.HasField("file")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call.read()
    # The next download of the same file is whole and right.
    parts = [
        m.chunk
        async for m in artifacts.stub.Download(pb.DownloadRequest(owner=OWNER, path="model.bin"))
    ]
    assert b"".join(parts) == data


async def test_download_helper_refuses_bytes_that_do_not_match_the_record(
    artifacts: Harness, tmp_path: Path
) -> None:
    data = os.urandom(MIB)
    await artifacts.stub.Upload(_requests(data))
    # The stored object rots behind the service's back (same size, other bytes).
    [row] = await artifacts.sql("SELECT storage_key FROM blobs")
    rotten = bytes([data[0] ^ 0xFF]) + data[1:]
    if artifacts.root is not None:
        await asyncio.to_thread((artifacts.root / row["storage_key"]).write_bytes, rotten)
    else:
        assert artifacts.s3 is not None
        async with s3_client(artifacts.s3) as client:
            await client.put_object(Bucket=artifacts.bucket, Key=row["storage_key"], Body=rotten)
    target = tmp_path / "out.bin"
    with pytest.raises(DigestMismatch):
        await download_file(artifacts.stub, OWNER, "model.bin", target)
    assert not await asyncio.to_thread(target.exists)


async def _requests(data: bytes) -> AsyncIterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=pb.UploadHeader(owner=OWNER, path="model.bin"))
    for i in range(0, len(data), MIB):
        yield pb.UploadRequest(chunk=data[i : i + MIB])


# -- allocator tuning ------------------------------------------------------------------------------


glibc_only = pytest.mark.skipif(memory._glibc() is None, reason="needs glibc")


@glibc_only
def test_tune_malloc_caps_arenas_by_default() -> None:
    assert memory.tune_malloc(environ={}) == memory.MallocTuning(arena_max=2)


@glibc_only
def test_tune_malloc_leaves_what_the_environment_set() -> None:
    # Values harmless to this test process: glibc's own maximum threshold, a large trim.
    tuning = memory.tune_malloc(
        mmap_threshold=memory.MAX_MMAP_THRESHOLD,
        trim_threshold=64 * MIB,
        environ={"MALLOC_ARENA_MAX": "4", "MALLOC_TRIM_THRESHOLD_": "131072"},
    )
    assert tuning == memory.MallocTuning(mmap_threshold=memory.MAX_MMAP_THRESHOLD)


@glibc_only
def test_tune_malloc_with_nothing_asked_sets_nothing() -> None:
    assert memory.tune_malloc(arena_max=None, environ={}) == memory.MallocTuning()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mmap_threshold": -1},
        {"mmap_threshold": memory.MAX_MMAP_THRESHOLD + 1},
        {"trim_threshold": -1},
        {"arena_max": 0},
    ],
)
def test_tune_malloc_refuses_values_glibc_would_misread(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        memory.tune_malloc(environ={}, **kwargs)


@glibc_only
def test_release_free_memory_returns_freed_heap_pages() -> None:
    # Many buffers under glibc's mmap threshold live in the heap; freeing all but the last
    # leaves free pages below it that only a trim gives back.
    buffers = [bytearray(100 * 1024) for _ in range(400)]
    keep = buffers[-1]
    del buffers
    assert memory.release_free_memory() is True
    assert len(keep) == 100 * 1024


# -- S3 part bodies --------------------------------------------------------------------------------


def test_part_bodies_are_reused_for_whole_parts_only() -> None:
    bodies = _PartBodies(keep=2)
    first = bodies.take(8 * MIB)
    bodies.give(first)
    assert bodies.take(8 * MIB) is first
    # Another size is a new buffer; a short last part is not kept.
    tail = bodies.take(MIB)
    bodies.give(tail)
    assert bodies.take(MIB) is not tail
    # At most `keep` are held.
    held = [bodies.take(8 * MIB) for _ in range(3)]
    for body in held:
        bodies.give(body)
    again = [bodies.take(8 * MIB) for _ in range(3)]
    assert sum(any(a is h for h in held) for a in again) == 2
