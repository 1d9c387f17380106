"""Every service of this build as its own process (one of them twice), one PostgreSQL, one
SeaweedFS, peers over gRPC, and the Python client with one target per service: the scenario
crosses services, and killing one replica keeps the registry working.

Written against whatever `modelreg_server.catalog.SERVICES` lists: a step whose service is not in
this build is skipped and says which service it waits for."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from e2e.multiprocess.cluster import FAST_RECONNECT, Cluster, kill, start_cluster, stop_cluster
from e2e.multiprocess.scenario import (
    register,
    require,
    require_relay,
    scenario,
    set_champion,
    upload_and_finalize,
)
from modelreg.client import AsyncRegistry, NotFoundError
from modelreg_server.catalog import SERVICES
from testkit import grpc_services, make_bucket

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multiprocess")


@pytest.fixture(scope="module")
async def artifact_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """S3 settings for the artifact processes, on a fresh bucket of the session's SeaweedFS
    (started only when this build has the artifact service)."""
    if "artifact" not in SERVICES:
        return {}
    s3 = request.getfixturevalue("s3")
    bucket = await make_bucket(s3, prefix="mp")
    return {
        "MODELREG_ARTIFACT_BACKEND": "s3",
        "MODELREG_ARTIFACT_S3__ENDPOINT_URL": s3.endpoint_url,
        "MODELREG_ARTIFACT_S3__REGION": "us-east-1",
        "MODELREG_ARTIFACT_S3__BUCKET": bucket,
        "MODELREG_ARTIFACT_S3__ACCESS_KEY_ID": s3.access_key,
        "MODELREG_ARTIFACT_S3__SECRET_ACCESS_KEY": s3.secret_key,
    }


@pytest.fixture(scope="module")
async def cluster(
    pg: Any, template: str, logs: Path, artifact_env: dict[str, str]
) -> AsyncIterator[Cluster]:
    services = list(SERVICES)
    if not services:
        pytest.skip("no service in modelreg_server.catalog.SERVICES yet")
    database = f"mp_{uuid.uuid4().hex}"
    await pg.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
    everyone: dict[str, str] = {}
    if "events" not in services:
        # Nobody to publish to: the outbox keeps the events until the events service exists.
        everyone["MODELREG_RELAY_ENABLED"] = "false"
    started = await start_cluster(
        services,
        dsn=pg.dsn(database),
        logs=logs,
        replicated="metadata" if "metadata" in services else services[0],
        extra_env={"artifact": artifact_env, "*": everyone},
    )
    try:
        yield started
    finally:
        await stop_cluster(started)
        await pg.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
async def client(cluster: Cluster) -> AsyncIterator[AsyncRegistry]:
    """The Python client with one target per service; a replicated service's target lists
    every replica and calls are balanced over them (round_robin)."""
    async with AsyncRegistry(
        target=cluster.target(cluster.services[0]),
        targets=cluster.targets(),
        options=[("grpc.lb_policy_name", "round_robin"), *FAST_RECONNECT],
    ) as registry:
        yield registry


# -- tests --------------------------------------------------------------------------------------


async def test_each_process_serves_exactly_its_own_services(cluster: Cluster) -> None:
    for replica in cluster.all_replicas():
        own = grpc_services(replica.service)
        async with aio.insecure_channel(replica.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", *own):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (replica.name, name)
            for other in cluster.services:
                if other != replica.service:
                    with pytest.raises(aio.AioRpcError) as err:
                        name = sorted(grpc_services(other))[0]
                        await health.Check(health_pb2.HealthCheckRequest(service=name))
                    assert err.value.code().name == "NOT_FOUND"
            listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            listed = {
                s.name for r in [r async for r in listing] for s in r.list_services_response.service
            }
        assert listed - {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} == own


async def test_a_version_registered_through_one_replica_reads_back_from_every_replica(
    cluster: Cluster, client: AsyncRegistry
) -> None:
    require(cluster, "metadata")
    registered = await register(client)
    for replica in cluster.replicas["metadata"]:
        async with AsyncRegistry(target=replica.target) as direct:
            version = (
                await direct.metadata.get_model_version(name=registered.version)
            ).model_version
        assert version.name == registered.version


async def test_finalize_seals_the_manifest_in_the_artifact_process(
    cluster: Cluster, client: AsyncRegistry
) -> None:
    require(cluster, "metadata", "artifact")
    registered = await register(client)
    await upload_and_finalize(client, registered)


async def test_alias_is_checked_against_metadata_in_another_process(
    cluster: Cluster, client: AsyncRegistry
) -> None:
    require(cluster, "metadata", "artifact", "lifecycle")
    registered = await register(client)
    await upload_and_finalize(client, registered)
    await set_champion(client, registered)
    with pytest.raises(NotFoundError) as err:
        await client.lifecycle.set_alias(
            name=f"{registered.model}/aliases/challenger", version=f"{registered.model}/versions/9"
        )
    assert err.value.reason == "RESOURCE_NOT_FOUND"


async def test_every_services_events_reach_the_events_process(
    cluster: Cluster, client: AsyncRegistry
) -> None:
    require(cluster, "metadata", "events")
    require_relay()
    await scenario(cluster, client)


async def test_logs_of_one_call_across_processes_carry_the_callers_trace_id(
    cluster: Cluster, client: AsyncRegistry
) -> None:
    """The client starts a trace (a W3C traceparent of its own); the request log lines of
    metadata (FinalizeModelVersion) and of artifact (the SealManifest it calls) both name it."""
    require(cluster, "metadata", "artifact")
    registered = await register(client)
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    await upload_and_finalize(
        client, registered, metadata=(("traceparent", f"00-{trace_id}-{span_id}-01"),)
    )

    def logged(service: str, method: str) -> list[dict[str, object]]:
        return [
            record
            for replica in cluster.replicas[service]
            for record in replica.log_records()
            if record.get("event") == "rpc.finished"
            and record.get("method") == method
            and record.get("trace_id") == trace_id
        ]

    finalize = logged("metadata", "/modelreg.metadata.v1.ModelVersionService/FinalizeModelVersion")
    seal = logged("artifact", "/modelreg.artifact.v1.ArtifactService/SealManifest")
    assert [r["code"] for r in finalize] == ["OK"]
    assert [r["code"] for r in seal] == ["OK"]
    # The request id is per hop; the trace id is what ties the hops together.
    assert finalize[0]["request_id"] != seal[0]["request_id"]


async def test_each_process_exposes_its_rpc_metrics(
    cluster: Cluster, client: AsyncRegistry
) -> None:
    require(cluster, "metadata", "artifact")
    await upload_and_finalize(client, await register(client))

    def scrape(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            body: bytes = reply.read()
        return body.decode()

    seal = 'method="/modelreg.artifact.v1.ArtifactService/SealManifest"'
    finalize = 'method="/modelreg.metadata.v1.ModelVersionService/FinalizeModelVersion"'
    artifact = await asyncio.to_thread(scrape, cluster.replicas["artifact"][0].metrics_port)
    metadata = "".join(
        [await asyncio.to_thread(scrape, r.metrics_port) for r in cluster.replicas["metadata"]]
    )
    for text, method in ((artifact, seal), (metadata, finalize)):
        counted = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("modelreg_rpc_total{") and method in line and 'code="OK"' in line
        ]
        assert sum(counted) >= 1, method
        assert any(
            line.startswith("modelreg_rpc_duration_seconds_bucket{") and method in line
            for line in text.splitlines()
        ), method
    # Only the service's own methods are counted in its process.
    assert "modelreg.metadata.v1" not in artifact


async def test_killing_one_replica_keeps_the_registry_working(
    cluster: Cluster, client: AsyncRegistry
) -> None:
    """Last in this module: it leaves the cluster one replica short."""
    replicated = next(s for s, replicas in cluster.replicas.items() if len(replicas) > 1)
    survivor = cluster.replicas[replicated][1]
    if "metadata" in cluster.services:
        await scenario(cluster, client)
    await kill(cluster.replicas[replicated][0])
    # The service's target still lists the dead replica, as a Service would until its endpoint
    # is removed: health through it answers from the survivor.
    async with aio.insecure_channel(
        cluster.target(replicated), options=[("grpc.lb_policy_name", "round_robin")]
    ) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(4):
            reply = await health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert survivor.process is not None
    assert survivor.process.returncode is None
    if "metadata" in cluster.services:
        # Clients and peers (lifecycle -> metadata) reach the surviving replica.
        await scenario(cluster, client)
    else:
        pytest.skip(
            f"killed one of two {replicated} replicas and the survivor serves; the scenario "
            "after the kill needs the metadata service"
        )
