"""Uses counted where they happen, through the runtime's recorder: artifact Download and
CreateDownloadUrl of a model version's files (once per call, never for a run's files), and
lifecycle ResolveAlias (the version it resolved to)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from grpc import aio
from pydantic import SecretStr

from modelreg.artifact.v1 import artifact_service_pb2 as pb
from modelreg.artifact.v1 import artifact_service_pb2_grpc as pb_grpc
from modelreg.client.aio import AsyncRegistry
from modelreg.events.v1 import usage_pb2, usage_service_pb2, usage_service_pb2_grpc
from modelreg_artifact.app import make_spec
from modelreg_artifact.settings import ArtifactSettings, S3Settings
from modelreg_common.local_s3 import LocalS3
from modelreg_common.server import RegistryServer
from modelreg_events.app import spec_with
from modelreg_events.settings import EventsSettings
from testkit import make_bucket, make_settings

EVENTS = spec_with(EventsSettings(allow_private_targets=True, poll_interval_seconds=0.5))
VERSION = "models/fraud/versions/1"
RUN = "experiments/e/runs/r"


async def usage_of(channel: aio.Channel, parent: str) -> dict[tuple[str, str, str], int]:
    stub = usage_service_pb2_grpc.UsageServiceStub(channel)
    reply = await stub.ListUsage(usage_service_pb2.ListUsageRequest(parent=parent))
    return {
        (r.model_version, r.principal, usage_pb2.UsageKind.Name(r.kind)): r.count
        for r in reply.usage_records
    }


async def upload(stub: Any, owner: str, path: str, data: bytes) -> None:
    async def messages() -> Any:
        yield pb.UploadRequest(header=pb.UploadHeader(owner=owner, path=path))
        yield pb.UploadRequest(chunk=data)

    await stub.Upload(messages())


async def download(stub: Any, owner: str, path: str) -> tuple[bytes, int]:
    """The file and the number of messages it came in."""
    chunks = [m.chunk async for m in stub.Download(pb.DownloadRequest(owner=owner, path=path))]
    return b"".join(chunks), len(chunks)


async def test_downloads_and_download_urls_count_once_per_call(
    start_server, open_channel, s3: LocalS3
) -> None:
    bucket = await make_bucket(s3)
    artifact = make_spec(
        ArtifactSettings(
            backend="s3",
            part_size_bytes=5 * 1024 * 1024,
            download_chunk_bytes=256 * 1024,
            gc_enabled=False,
            s3=S3Settings(
                endpoint_url=s3.endpoint_url,
                bucket=bucket,
                access_key_id=s3.access_key,
                secret_access_key=SecretStr(s3.secret_key),
            ),
        )
    )
    server: RegistryServer = await start_server(
        [artifact, EVENTS], settings=make_settings(relay_enabled=False)
    )
    channel = open_channel(server.address)
    stub = pb_grpc.ArtifactServiceStub(channel)
    data = b"w" * (3 * 1024 * 1024)
    await upload(stub, VERSION, "model.bin", data)
    await upload(stub, RUN, "model.bin", b"run file")
    for _ in range(2):
        got, messages = await download(stub, VERSION, "model.bin")
        assert got == data
        assert messages > 1  # many chunks, one use
    await stub.CreateDownloadUrl(pb.CreateDownloadUrlRequest(owner=VERSION, path="model.bin"))
    assert (await download(stub, RUN, "model.bin"))[0] == b"run file"
    await server.usage.flush()
    # Local mode: every call is the local principal's.
    assert await usage_of(channel, "models/fraud") == {(VERSION, "local", "USAGE_KIND_DOWNLOAD"): 3}


async def test_alias_resolutions_count_for_the_version_resolved_to(
    registry: RegistryServer, tmp_path: Path
) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    (tmp_path / "model.bin").write_bytes(b"weights")
    async with AsyncRegistry(registry.address) as client:
        v1 = await client.register_model(model, tmp_path)
        v2 = await client.register_model(model, tmp_path)
        assert (await client.promote(model, 1, "champion")).moved
        for _ in range(2):
            assert (await client.resolve(f"models:/{model}@champion")).name == v1.name
        assert (await client.promote(model, 2, "champion")).moved
        assert (await client.resolve(f"models:/{model}@champion")).name == v2.name
        await client.metadata.get_model_version(name=v1.name)  # a plain read is not usage
        await registry.usage.flush()
        async with aio.insecure_channel(registry.address) as channel:
            counted = await usage_of(channel, f"models/{model}")
    assert counted == {
        (v1.name, "local", "USAGE_KIND_ALIAS_RESOLUTION"): 2,
        (v2.name, "local", "USAGE_KIND_ALIAS_RESOLUTION"): 1,
    }
