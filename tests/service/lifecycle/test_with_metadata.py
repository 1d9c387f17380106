"""Lifecycle against the REAL metadata service (and the real artifact service, which seals a
version's files when metadata finalizes it), all on one in-process server."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from modelreg.lifecycle.v1 import (
    alias_service_pb2,
    alias_service_pb2_grpc,
    deployment_pb2,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    policy_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
)
from modelreg.metadata.v1 import (
    experiment_service_pb2,
    experiment_service_pb2_grpc,
    lineage_service_pb2,
    lineage_service_pb2_grpc,
    model_version_pb2,
    model_version_service_pb2,
    model_version_service_pb2_grpc,
    registered_model_pb2,
    registered_model_service_pb2,
    registered_model_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    signature_pb2,
)
from modelreg_artifact.app import SPEC as ARTIFACT
from modelreg_common.settings import PeerSettings
from modelreg_lifecycle.app import SPEC as LIFECYCLE
from modelreg_metadata.app import SPEC as METADATA
from testkit import error_details, make_settings

ALIAS = "models/fraud/aliases/champion"


class Stack:
    def __init__(self, channel: aio.Channel) -> None:
        self.models = registered_model_service_pb2_grpc.RegisteredModelServiceStub(channel)
        self.versions = model_version_service_pb2_grpc.ModelVersionServiceStub(channel)
        self.experiments = experiment_service_pb2_grpc.ExperimentServiceStub(channel)
        self.runs = run_service_pb2_grpc.RunServiceStub(channel)
        self.lineage = lineage_service_pb2_grpc.LineageServiceStub(channel)
        self.aliases = alias_service_pb2_grpc.AliasServiceStub(channel)
        self.policies = policy_service_pb2_grpc.PolicyServiceStub(channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(channel)

    async def version(self, *, run: str = "", finalize: bool = True, **tags: str) -> str:
        draft = model_version_pb2.ModelVersion(run=run, tags=tags)
        draft.signature.inputs.add(name="x", type=signature_pb2.DATA_TYPE_FLOAT32)
        created = await self.versions.CreateModelVersion(
            model_version_service_pb2.CreateModelVersionRequest(
                parent="models/fraud", model_version=draft
            )
        )
        name = created.model_version.name
        if finalize:
            await self.versions.FinalizeModelVersion(
                model_version_service_pb2.FinalizeModelVersionRequest(name=name)
            )
        return str(name)


@pytest.fixture
async def stack(start_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MODELREG_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    # A fixed port: metadata opens its peer channels when it is created, before a port-0
    # listener knows its port (reported to the metadata owner).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    peers = PeerSettings(metadata=address, artifact=address, lifecycle=address)
    server = await start_server(
        [METADATA, ARTIFACT, LIFECYCLE],
        settings=make_settings(listen=address, peers=peers, relay_enabled=False),
    )
    async with aio.insecure_channel(server.address) as channel:
        stack = Stack(channel)
        await stack.models.CreateRegisteredModel(
            registered_model_service_pb2.CreateRegisteredModelRequest(
                registered_model_id="fraud", registered_model=registered_model_pb2.RegisteredModel()
            )
        )
        yield stack


async def test_resolve_returns_the_full_record_from_metadata(stack: Any) -> None:
    names = [await stack.version(idx=str(i), framework="sklearn") for i in range(3)]
    moved = await stack.aliases.SetAlias(
        alias_service_pb2.SetAliasRequest(name=ALIAS, version=names[1])
    )
    assert moved.alias.version == names[1]
    truth = await stack.versions.GetModelVersion(
        model_version_service_pb2.GetModelVersionRequest(name=names[1])
    )
    for reference in ("models/fraud@champion", "models:/fraud@champion"):
        reply = await stack.aliases.ResolveAlias(
            alias_service_pb2.ResolveAliasRequest(name=reference)
        )
        assert reply.model_version == truth.model_version
        assert reply.model_version.state == model_version_pb2.MODEL_VERSION_STATE_READY


async def test_unready_and_unknown_versions_are_refused(stack: Any) -> None:
    pending = await stack.version(finalize=False)
    with pytest.raises(aio.AioRpcError) as err:
        await stack.aliases.SetAlias(alias_service_pb2.SetAliasRequest(name=ALIAS, version=pending))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(err.value)[1]["from"] == "PENDING_REGISTRATION"
    with pytest.raises(aio.AioRpcError) as err:
        await stack.aliases.SetAlias(
            alias_service_pb2.SetAliasRequest(name=ALIAS, version="models/fraud/versions/99")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(err.value)[:2] == (
        "RESOURCE_NOT_FOUND",
        {"name": "models/fraud/versions/99"},
    )


async def test_metric_threshold_over_the_source_runs_metrics(stack: Any) -> None:
    await stack.experiments.CreateExperiment(
        experiment_service_pb2.CreateExperimentRequest(experiment_id="churn")
    )
    run = (
        await stack.runs.CreateRun(run_service_pb2.CreateRunRequest(parent="experiments/churn"))
    ).run.name
    await stack.runs.LogRunData(
        run_service_pb2.LogRunDataRequest(name=run, metrics=[run_pb2.Metric(key="auc", value=0.85)])
    )
    version = await stack.version(run=run)
    await stack.policies.SetPolicy(
        policy_service_pb2.SetPolicyRequest(
            policy=policy_pb2.Policy(
                name="policies/registry",
                rules=[
                    policy_pb2.PolicyRule(
                        aliases=["champion"], checks=["metrics.auc >= 0.90", "signature.present"]
                    )
                ],
            )
        )
    )
    with pytest.raises(aio.AioRpcError) as err:
        await stack.aliases.SetAlias(alias_service_pb2.SetAliasRequest(name=ALIAS, version=version))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reason, meta, _ = error_details(err.value)
    assert reason == "INVALID_STATE_TRANSITION"
    assert meta["failed_checks"] == "metrics.auc >= 0.90"
    assert meta["check.0"] == "metrics.auc >= 0.90: auc is 0.85"
    await stack.runs.LogRunData(
        run_service_pb2.LogRunDataRequest(
            name=run, metrics=[run_pb2.Metric(key="auc", value=0.95, step=1)]
        )
    )
    moved = await stack.aliases.SetAlias(
        alias_service_pb2.SetAliasRequest(name=ALIAS, version=version)
    )
    assert moved.alias.version == version


async def test_deployment_is_a_lineage_node_downstream_of_the_version(stack: Any) -> None:
    version = await stack.version()
    recorded = await stack.deployments.RecordDeployment(
        deployment_service_pb2.RecordDeploymentRequest(
            parent="models/fraud",
            deployment=deployment_pb2.Deployment(
                version=version,
                environment="prod-eu",
                endpoint="https://fraud.internal/predict",
                status=deployment_pb2.DEPLOYMENT_STATUS_ACTIVE,
            ),
        )
    )
    node = recorded.deployment.lineage_node
    assert node.startswith("deployments/")
    lineage = await stack.lineage.GetLineage(lineage_service_pb2.GetLineageRequest(start=version))
    assert node in {n.name for n in lineage.nodes}
    assert any(e.source == version and e.target == node for e in lineage.edges)
