"""The scenario's steps, shared by the multi-process tests: each step uses the Python client
and asserts what crossing services must produce."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from e2e.multiprocess.cluster import Cluster
from modelreg.artifact.v1 import artifact_service_pb2
from modelreg.client import AsyncRegistry
from modelreg.metadata.v1 import model_version_pb2
from modelreg_common.settings import Settings

CHUNK = 64 * 1024

# The outbox relay (each service pushing its outbox to the events service) is part of the
# runtime; a build without it keeps events in the outboxes and the event steps cannot run.
HAS_RELAY = (
    importlib.util.find_spec("modelreg_common.relay") is not None
    and "relay_enabled" in Settings.model_fields
)


def require_relay() -> None:
    if not HAS_RELAY:
        pytest.skip("the runtime has no outbox relay yet (modelreg_common.relay): no event moves")


def require(cluster: Cluster, *services: str) -> None:
    missing = [s for s in services if s not in cluster.services]
    if missing:
        pytest.skip(
            f"needs the {', '.join(missing)} service(s), not in modelreg_server.catalog.SERVICES "
            f"of this build (it has: {', '.join(cluster.services)})"
        )


# -- the steps of the scenario ----------------------------------------------------------------


@dataclass
class Registered:
    model: str
    version: str


async def register(client: AsyncRegistry) -> Registered:
    model_id = f"mp-{uuid.uuid4().hex[:12]}"
    await client.metadata.create_registered_model(
        registered_model_id=model_id, request_id=uuid.uuid4().hex
    )
    reply = await client.metadata.create_model_version(
        parent=f"models/{model_id}",
        model_version=model_version_pb2.ModelVersion(description="multi-process e2e"),
        request_id=uuid.uuid4().hex,
    )
    version = reply.model_version
    assert version.name == f"models/{model_id}/versions/1"
    assert version.state == model_version_pb2.MODEL_VERSION_STATE_PENDING_REGISTRATION
    return Registered(f"models/{model_id}", version.name)


async def upload_and_finalize(
    client: AsyncRegistry, registered: Registered, metadata: tuple[tuple[str, str], ...] = ()
) -> str:
    """Upload to artifact, then finalize in metadata, which seals the manifest in artifact."""
    data = os.urandom(300 * 1024)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"

    async def requests() -> AsyncIterator[artifact_service_pb2.UploadRequest]:
        yield artifact_service_pb2.UploadRequest(
            header=artifact_service_pb2.UploadHeader(
                owner=registered.version,
                path="model/weights.bin",
                expected_size_bytes=len(data),
                expected_digest=digest,
            )
        )
        for offset in range(0, len(data), CHUNK):
            yield artifact_service_pb2.UploadRequest(chunk=data[offset : offset + CHUNK])

    uploaded = await client.artifacts.upload(requests())
    assert (uploaded.file.digest, uploaded.file.size_bytes) == (digest, len(data))
    finalized = (
        await client.metadata.finalize_model_version(name=registered.version, metadata=metadata)
    ).model_version
    assert finalized.state == model_version_pb2.MODEL_VERSION_STATE_READY
    manifest = (await client.artifacts.get_manifest(owner=registered.version)).manifest
    assert manifest.sealed
    assert (manifest.file_count, manifest.total_size_bytes) == (1, len(data))
    assert finalized.artifact_digest == manifest.digest
    digest_of_manifest: str = manifest.digest
    return digest_of_manifest


async def set_champion(client: AsyncRegistry, registered: Registered) -> None:
    """lifecycle asks metadata whether the version exists and is READY before moving the alias."""
    alias = f"{registered.model}/aliases/champion"
    reply = await client.lifecycle.set_alias(name=alias, version=registered.version)
    assert reply.alias.version == registered.version
    resolved = await client.lifecycle.resolve_alias(name=f"{registered.model}@champion")
    assert resolved.model_version.name == registered.version
    assert resolved.model_version.state == model_version_pb2.MODEL_VERSION_STATE_READY


async def events_of(client: AsyncRegistry, model: str, expected: set[str]) -> set[str]:
    """Subscribe from the start of the log to this model's events until all expected arrived:
    each service's outbox relay published them to the events process."""
    seen: set[str] = set()
    async with asyncio.timeout(30):
        async for reply in client.events.subscribe(filter=f'subject = "{model}*"'):
            seen.add(reply.event.type)
            if expected <= seen:
                break
    return seen


def expected_events(services: list[str]) -> set[str]:
    expected = {"registered_model.created", "model_version.created"}
    if "artifact" in services:
        expected |= {"artifact.uploaded", "model_version.finalized"}
    if {"artifact", "lifecycle"} <= set(services):
        expected.add("model_version.alias_set")
    return expected


async def scenario(cluster: Cluster, client: AsyncRegistry) -> Registered:
    """Every step this build can run, in the order a training job and a reviewer would."""
    registered = await register(client)
    if "artifact" in cluster.services:
        await upload_and_finalize(client, registered)
        if "lifecycle" in cluster.services:
            await set_champion(client, registered)
    if "events" in cluster.services and HAS_RELAY:
        expected = expected_events(cluster.services)
        assert await events_of(client, registered.model, expected) >= expected
    return registered
