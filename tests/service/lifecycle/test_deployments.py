"""Deployments and production metrics: records, supersession, lineage, degradation episodes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2
from grpc import aio

from modelreg.lifecycle.v1 import (
    deployment_pb2,
    deployment_service_pb2,
    policy_pb2,
    policy_service_pb2,
    production_metric_pb2,
    production_metric_service_pb2,
)
from modelreg.metadata.v1 import lineage_pb2
from testkit import error_details

ACTIVE = deployment_pb2.DEPLOYMENT_STATUS_ACTIVE


def v(n: int) -> str:
    return f"models/fraud/versions/{n}"


async def record(client: Any, version: str, environment: str = "prod", **kw: Any) -> Any:
    fields: dict[str, Any] = {"endpoint": "https://fraud/predict", "status": ACTIVE}
    request_id = kw.pop("request_id", "")
    fields.update(kw)
    reply = await client.deployments.RecordDeployment(
        deployment_service_pb2.RecordDeploymentRequest(
            parent="models/fraud",
            deployment=deployment_pb2.Deployment(
                version=version, environment=environment, **fields
            ),
            request_id=request_id,
        ),
        metadata=client.metadata,
    )
    return reply.deployment


async def metrics(
    client: Any, version: str, values: dict[str, float], environment: str = "prod"
) -> Any:
    return await client.metrics.RecordProductionMetrics(
        production_metric_service_pb2.RecordProductionMetricsRequest(
            version=version,
            environment=environment,
            metrics=[
                production_metric_pb2.ProductionMetric(
                    metric=k, value=x, window=duration_pb2.Duration(seconds=300)
                )
                for k, x in values.items()
            ],
        ),
        metadata=client.metadata,
    )


async def events(dsn: str, prefix: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT type, subject, data FROM lifecycle.outbox WHERE type LIKE $1 ORDER BY seq",
            prefix + "%",
        )
    finally:
        await conn.close()


async def test_deployments_record_supersede_and_list(lifecycle: Any) -> None:
    for n in (1, 2):
        lifecycle.meta.add_version("fraud", n)
    alice = lifecycle.as_("alice")
    first = await record(alice, v(1))
    assert first.name.startswith("models/fraud/deployments/")
    assert (first.version, first.environment, first.status, first.recorder) == (
        v(1),
        "prod",
        ACTIVE,
        "alice",
    )
    assert first.lineage_node.startswith("deployments/")
    await record(alice, v(1), "staging")
    second = await record(alice, v(2))
    everything = await alice.deployments.ListDeployments(
        deployment_service_pb2.ListDeploymentsRequest(parent="models/fraud", page_size=2),
        metadata=alice.metadata,
    )
    assert [d.version for d in everything.deployments] == [v(2), v(1)]
    rest = await alice.deployments.ListDeployments(
        deployment_service_pb2.ListDeploymentsRequest(
            parent="models/fraud", page_size=2, page_token=everything.next_page_token
        ),
        metadata=alice.metadata,
    )
    assert [d.name for d in rest.deployments] == [first.name]
    assert rest.deployments[0].HasField("end_time")  # superseded by `second`
    current = await alice.deployments.ListDeployments(
        deployment_service_pb2.ListDeploymentsRequest(
            parent="models/fraud", environment="prod", current_only=True
        ),
        metadata=alice.metadata,
    )
    assert [d.name for d in current.deployments] == [second.name]
    # Each deployment became a lineage node downstream of its version.
    request = lifecycle.meta.lineage[0]
    assert request.nodes[0].type == lineage_pb2.LINEAGE_NODE_TYPE_DEPLOYMENT
    assert (request.edges[0].source, request.edges[0].target) == (v(1), first.lineage_node)
    recorded = await events(lifecycle.dsn, "deployment.")
    assert next((e["type"], e["subject"]) for e in recorded) == ("deployment.recorded", first.name)
    assert len(recorded) == 3


async def test_record_deployment_is_idempotent(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    request_id = str(uuid.uuid4())
    first = await record(alice, v(1), request_id=request_id)
    again = await record(alice, v(1), request_id=request_id)
    assert again == first
    assert len(await events(lifecycle.dsn, "deployment.")) == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"environment": "prod eu"}, "deployment.environment"),
        ({"endpoint": ""}, "deployment.endpoint"),
        ({"status": deployment_pb2.DEPLOYMENT_STATUS_UNSPECIFIED}, "deployment.status"),
        ({"version": "models/other/versions/1"}, "deployment.version"),
    ],
)
async def test_bad_deployments_name_their_field(
    lifecycle: Any, overrides: dict[str, Any], field: str
) -> None:
    alice = lifecycle.as_("alice")
    version = overrides.pop("version", v(1))
    environment = overrides.pop("environment", "prod")
    with pytest.raises(aio.AioRpcError) as err:
        await record(alice, version, environment, **overrides)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == field


async def test_deployment_of_unknown_version_is_not_found(lifecycle: Any) -> None:
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await record(alice, v(5))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def set_thresholds(client: Any, name: str, *thresholds: str) -> None:
    await client.policies.SetPolicy(
        policy_service_pb2.SetPolicyRequest(
            policy=policy_pb2.Policy(name=name, production_thresholds=list(thresholds))
        ),
        metadata=client.metadata,
    )


async def test_degradation_is_emitted_once_per_episode(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    await set_thresholds(alice, "policies/registry", "accuracy >= 0.5", "latency_ms <= 100")
    await set_thresholds(alice, "models/fraud/policy", "accuracy >= 0.8")
    healthy = await metrics(alice, v(1), {"accuracy": 0.9, "latency_ms": 50})
    assert len(healthy.metrics) == 2
    assert not healthy.opened
    # 0.7 passes the registry's threshold but not the model's, which overrides it.
    degraded = await metrics(alice, v(1), {"accuracy": 0.7})
    assert [(d.metric, d.threshold, d.value) for d in degraded.opened] == [
        ("accuracy", "accuracy >= 0.8", 0.7)
    ]
    still = await metrics(alice, v(1), {"accuracy": 0.6})
    assert not still.opened
    # Another environment is another series.
    other = await metrics(alice, v(1), {"accuracy": 0.1}, "canary")
    assert len(other.opened) == 1
    await metrics(alice, v(1), {"accuracy": 0.95})  # recovers: the episode closes
    again = await metrics(alice, v(1), {"accuracy": 0.5})
    assert len(again.opened) == 1
    types = [e["type"] for e in await events(lifecycle.dsn, "production_metrics.")]
    assert types.count("production_metrics.degraded") == 3
    assert types.count("production_metrics.recovered") == 1
    assert types.count("production_metrics.recorded") == 6
    listed = await alice.metrics.ListDegradations(
        production_metric_service_pb2.ListDegradationsRequest(parent="models/fraud"),
        metadata=alice.metadata,
    )
    assert len(listed.degradations) == 3
    open_only = await alice.metrics.ListDegradations(
        production_metric_service_pb2.ListDegradationsRequest(
            parent="models/fraud", open_only=True
        ),
        metadata=alice.metadata,
    )
    assert len(open_only.degradations) == 2
    assert all(not d.HasField("end_time") for d in open_only.degradations)


async def test_concurrent_bad_values_open_one_episode(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    await set_thresholds(alice, "models/fraud/policy", "accuracy >= 0.8")
    replies = await asyncio.gather(*(metrics(alice, v(1), {"accuracy": 0.1}) for _ in range(8)))
    assert sum(len(r.opened) for r in replies) == 1
    degraded = await events(lifecycle.dsn, "production_metrics.degraded")
    assert len(degraded) == 1


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({}, "metrics"),
        ({"bad name": 1.0}, "metrics[0].metric"),
        ({"accuracy": float("nan")}, "metrics[0].value"),
    ],
)
async def test_bad_metrics_name_their_field(
    lifecycle: Any, values: dict[str, float], field: str
) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await metrics(alice, v(1), values)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == field
