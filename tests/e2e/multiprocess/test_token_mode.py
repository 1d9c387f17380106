"""The processes as the Kubernetes manifests run them: `MODELREG_AUTH__MODE=token`. Probes need
no token; callers without a valid one are refused; and the calls services make to each other
must carry a credential too (the outbox relay to events, metadata to artifact)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from e2e.multiprocess.cluster import Cluster, start_cluster, stop_cluster
from e2e.multiprocess.scenario import register, require, upload_and_finalize
from modelreg.client import AsyncRegistry, UnauthenticatedError
from modelreg_server.catalog import SERVICES

pytestmark = pytest.mark.slow

TOKEN = "e2e-" + uuid.uuid4().hex
PEER_TOKEN = "peer-" + uuid.uuid4().hex


def token_entry(token: str, principal: str) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(token.encode()).hexdigest(), "principal": principal}


@pytest.fixture(scope="module")
async def cluster(
    pg: Any, template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    services = list(SERVICES)
    if not services:
        pytest.skip("no service in modelreg_server.catalog.SERVICES yet")
    logs = tmp_path_factory.mktemp("token-mode")
    database = f"tok_{uuid.uuid4().hex}"
    await pg.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
    tokens = [token_entry(TOKEN, "e2e"), token_entry(PEER_TOKEN, "system:peers")]
    everyone = {
        "MODELREG_AUTH__MODE": "token",
        "MODELREG_AUTH__TOKENS": json.dumps(tokens),
        # What every service presents to its peers; its principal is an admin by configuration.
        "MODELREG_PEERS__TOKEN": PEER_TOKEN,
        "MODELREG_AUTH__ADMINS": json.dumps(["user:system:peers"]),
        # Every caller may create models (and so owns what it creates).
        "MODELREG_AUTH__DEFAULT_ROLE": "editor",
    }
    if "events" not in services:
        everyone["MODELREG_RELAY_ENABLED"] = "false"
    started = await start_cluster(
        services,
        dsn=pg.dsn(database),
        logs=logs,
        replicated="metadata" if "metadata" in services else services[0],
        extra_env={
            "*": everyone,
            "artifact": {"MODELREG_ARTIFACT_ROOT": str(Path(logs) / "blobs")},
        },
    )
    try:
        yield started
    finally:
        await stop_cluster(started)
        await pg.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def test_probes_need_no_token_and_calls_without_a_valid_one_are_refused(
    cluster: Cluster,
) -> None:
    for replica in cluster.all_replicas():
        async with aio.insecure_channel(replica.target) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    require(cluster, "metadata")
    for token in (None, "not-a-known-token"):
        async with AsyncRegistry(
            targets=cluster.targets(), target=cluster.target("metadata"), token=token
        ) as anonymous:
            with pytest.raises(UnauthenticatedError) as err:
                await anonymous.metadata.get_model_version(name="models/x/versions/1")
        assert err.value.reason == "INVALID_TOKEN"


async def test_cross_service_calls_carry_a_credential(cluster: Cluster) -> None:
    require(cluster, "metadata", "artifact")
    async with AsyncRegistry(
        targets=cluster.targets(), target=cluster.target("metadata"), token=TOKEN
    ) as client:
        registered = await register(client)
        await upload_and_finalize(client, registered)
