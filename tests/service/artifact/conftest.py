"""Artifact servers over both backends: the local directory and a fresh bucket on the
session's real SeaweedFS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from grpc import aio
from pydantic import SecretStr

from modelreg.artifact.v1 import artifact_service_pb2_grpc
from modelreg_artifact.app import ArtifactComponent, make_spec
from modelreg_artifact.settings import ArtifactSettings, S3Settings
from modelreg_common.local_s3 import LocalS3
from modelreg_common.server import RegistryServer
from testkit import make_bucket, s3_client

MIB = 1024 * 1024


@dataclass
class Harness:
    """One running artifact service and ways to look behind it."""

    backend: str
    server: RegistryServer
    channel: aio.Channel
    stub: Any
    dsn: str
    root: Path | None = None
    s3: LocalS3 | None = None
    bucket: str = ""

    @property
    def component(self) -> ArtifactComponent:
        component = self.server.components[0]
        assert isinstance(component, ArtifactComponent)
        return component

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn, server_settings={"search_path": "artifact"})
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def stored_objects(self) -> list[str]:
        """Every object the backend holds (finished ones)."""
        if self.root is not None:
            return sorted(
                str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
            )
        assert self.s3 is not None
        async with s3_client(self.s3) as client:
            listed = await client.list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    async def pending_multipart(self) -> list[str]:
        if self.s3 is None:
            return []
        async with s3_client(self.s3) as client:
            listed = await client.list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in listed.get("Uploads", [])]

    async def assert_nothing_left(self) -> None:
        assert await self.sql("SELECT id FROM upload_sessions") == []
        assert await self.sql("SELECT digest FROM blobs") == []
        assert await self.sql("SELECT owner FROM manifest_entries") == []
        assert await self.sql("SELECT storage_key FROM doomed_objects") == []
        assert await self.stored_objects() == []
        assert await self.pending_multipart() == []


StartArtifacts = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start_artifacts(
    start_server: Any, dsn: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StartArtifacts]:
    channels: list[aio.Channel] = []

    async def start(backend: str, *, s3: LocalS3 | None = None, **overrides: Any) -> Harness:
        values: dict[str, Any] = {
            "part_size_bytes": 5 * MIB,
            "gc_enabled": False,
            "blob_grace_seconds": 0,
        }
        values.update(overrides)
        root: Path | None = None
        bucket = ""
        if backend == "local":
            root = tmp_path / f"artifacts-{uuid.uuid4().hex[:8]}"
            values["root"] = root
        else:
            if s3 is None:
                s3 = request.getfixturevalue("s3")
            assert s3 is not None
            bucket = await make_bucket(s3)
            values["backend"] = "s3"
            values["s3"] = S3Settings(
                endpoint_url=s3.endpoint_url,
                bucket=bucket,
                access_key_id=s3.access_key,
                secret_access_key=SecretStr(s3.secret_key),
                connect_timeout_seconds=2,
                read_timeout_seconds=10,
            )
        server = await start_server([make_spec(ArtifactSettings(**values))])
        channel = aio.insecure_channel(server.address)
        channels.append(channel)
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        return Harness(backend, server, channel, stub, dsn, root, s3, bucket)

    yield start
    for channel in channels:
        await channel.close()


@pytest.fixture(params=["local", "s3"])
async def artifacts(request: pytest.FixtureRequest, start_artifacts: StartArtifacts) -> Harness:
    """The same test on both backends."""
    return await start_artifacts(request.param)
