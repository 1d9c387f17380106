"""Fixtures for the lifecycle service: a server in token mode with a few principals, and a
metadata peer. `metadata` is an in-process stand-in over real gRPC (for rules that need
versions in states the metadata API cannot easily produce); the real metadata service is
used by test_with_metadata.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import pytest
from grpc import aio
from pydantic import SecretStr

from modelreg.lifecycle.v1 import (
    alias_service_pb2_grpc,
    deployment_service_pb2_grpc,
    policy_service_pb2_grpc,
    production_metric_service_pb2_grpc,
    stage_service_pb2_grpc,
    transition_request_service_pb2_grpc,
)
from modelreg.metadata.v1 import (
    access_pb2,
    access_service_pb2,
    access_service_pb2_grpc,
    lineage_service_pb2,
    lineage_service_pb2_grpc,
    model_version_pb2,
    model_version_service_pb2,
    model_version_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    signature_pb2,
)
from modelreg_common.auth import hash_token
from modelreg_common.server import RegistryServer, ServiceRuntime, ServiceSpec
from modelreg_common.settings import AuthSettings, PeerSettings, TokenEntry
from modelreg_lifecycle.app import SPEC as LIFECYCLE
from testkit import make_settings

USERS = ("alice", "bob", "carol", "dave", "svc-lifecycle")


def token_of(user: str) -> str:
    return f"token-{user}-0123456789"


Role = Literal["none", "viewer", "editor", "approver", "owner"]


def token_settings(default_role: Role = "owner") -> Any:
    # These tests read the lifecycle outbox itself; no relay ships it to an events service.
    return make_settings(
        relay_enabled=False,
        peers=PeerSettings(token=SecretStr(token_of("svc-lifecycle"))),
        auth=AuthSettings(
            mode="token",
            tokens=[TokenEntry(sha256=hash_token(token_of(u)), principal=u) for u in USERS],
            # Every user may do everything on every model unless a test narrows it with
            # `FakeMetadata.registry_roles`; the service principal is an admin.
            default_role=default_role,
            admins=["user:svc-lifecycle"],
        ),
    )


@dataclass
class FakeMetadata:
    """Versions and runs by name; records lineage calls; can be made unavailable."""

    versions: dict[str, model_version_pb2.ModelVersion] = field(default_factory=dict)
    runs: dict[str, dict[str, float]] = field(default_factory=dict)
    lineage: list[lineage_service_pb2.CreateLineageEdgesRequest] = field(default_factory=list)
    unavailable_calls: int = 0
    calls: int = 0
    # ResolveAccess answers: a registry role per user (default: none, so auth.default_role),
    # and roles per user and model.
    registry_roles: dict[str, access_pb2.Role.ValueType] = field(default_factory=dict)
    model_roles: dict[str, dict[str, access_pb2.Role.ValueType]] = field(default_factory=dict)

    def add_version(
        self,
        model: str,
        number: int,
        *,
        state: model_version_pb2.ModelVersionState.ValueType = (
            model_version_pb2.MODEL_VERSION_STATE_READY
        ),
        run: str = "",
        tags: dict[str, str] | None = None,
        signature: bool = True,
    ) -> str:
        name = f"models/{model}/versions/{number}"
        version = model_version_pb2.ModelVersion(
            name=name, state=state, run=run, tags=tags or {}, version=number
        )
        if signature:
            version.signature.inputs.add(name="x", type=signature_pb2.DATA_TYPE_FLOAT32)
        self.versions[name] = version
        return name

    async def _gate(self, context: Any) -> None:
        self.calls += 1
        if self.unavailable_calls > 0:
            self.unavailable_calls -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "metadata is restarting")

    def spec(self) -> ServiceSpec:
        fake = self

        class Versions(model_version_service_pb2_grpc.ModelVersionServiceServicer):
            async def GetModelVersion(self, request: Any, context: Any) -> Any:
                await fake._gate(context)
                found = fake.versions.get(request.name)
                if found is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
                return model_version_service_pb2.GetModelVersionResponse(model_version=found)

        class Runs(run_service_pb2_grpc.RunServiceServicer):
            async def GetRun(self, request: Any, context: Any) -> Any:
                await fake._gate(context)
                metrics = fake.runs.get(request.name)
                if metrics is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
                return run_service_pb2.GetRunResponse(
                    run=run_pb2.Run(name=request.name, latest_metrics=metrics)
                )

        class Lineage(lineage_service_pb2_grpc.LineageServiceServicer):
            async def CreateLineageEdges(self, request: Any, context: Any) -> Any:
                fake.lineage.append(request)
                return lineage_service_pb2.CreateLineageEdgesResponse(
                    nodes=request.nodes, edges=request.edges
                )

        class Access(access_service_pb2_grpc.AccessServiceServicer):
            async def ResolveAccess(self, request: Any, context: Any) -> Any:
                return access_service_pb2.ResolveAccessResponse(
                    registry_role=fake.registry_roles.get(
                        request.subject, access_pb2.ROLE_UNSPECIFIED
                    ),
                    model_roles=[
                        access_pb2.ModelRole(model=f"models/{model}", role=role)
                        for model, role in fake.model_roles.get(request.subject, {}).items()
                    ],
                )

        class Component:
            service_names = [
                "modelreg.metadata.v1.AccessService",
                "modelreg.metadata.v1.ModelVersionService",
                "modelreg.metadata.v1.RunService",
                "modelreg.metadata.v1.LineageService",
            ]

            def register(self, server: aio.Server) -> None:
                model_version_service_pb2_grpc.add_ModelVersionServiceServicer_to_server(
                    Versions(),  # type: ignore[abstract]
                    server,
                )
                run_service_pb2_grpc.add_RunServiceServicer_to_server(
                    Runs(),  # type: ignore[abstract]
                    server,
                )
                lineage_service_pb2_grpc.add_LineageServiceServicer_to_server(
                    Lineage(),  # type: ignore[abstract]
                    server,
                )
                access_service_pb2_grpc.add_AccessServiceServicer_to_server(
                    Access(),  # type: ignore[abstract]
                    server,
                )

            async def start(self) -> None:
                pass

            async def stop(self) -> None:
                pass

        async def create(runtime: ServiceRuntime) -> Component:
            return Component()

        return ServiceSpec(
            name="fakemetadata", schema="fakemetadata", migrations_package=None, create=create
        )


class Client:
    """Stubs of every lifecycle service, calling as one principal."""

    def __init__(self, channel: aio.Channel, user: str) -> None:
        self.user = user
        self.metadata = (("authorization", f"Bearer {token_of(user)}"),)
        self.aliases = alias_service_pb2_grpc.AliasServiceStub(channel)
        self.stages = stage_service_pb2_grpc.StageServiceStub(channel)
        self.policies = policy_service_pb2_grpc.PolicyServiceStub(channel)
        self.requests = transition_request_service_pb2_grpc.TransitionRequestServiceStub(channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(channel)
        self.metrics = production_metric_service_pb2_grpc.ProductionMetricServiceStub(channel)


@dataclass
class Lifecycle:
    server: RegistryServer
    channel: aio.Channel
    meta: FakeMetadata
    dsn: str

    def as_(self, user: str) -> Client:
        return Client(self.channel, user)


@pytest.fixture
async def start_lifecycle(
    start_server: Any, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[Lifecycle]]]:
    """`await start_lifecycle(**env)`: lifecycle plus the metadata stand-in, with extra
    MODELREG_LIFECYCLE_* settings given as keyword arguments."""
    channels: list[aio.Channel] = []

    async def start(default_role: Role = "owner", **env: str) -> Lifecycle:
        monkeypatch.setenv("MODELREG_LIFECYCLE_METADATA_BACKOFF_SECONDS", "0.001")
        for key, value in env.items():
            monkeypatch.setenv(f"MODELREG_LIFECYCLE_{key.upper()}", value)
        meta = FakeMetadata()
        server = await start_server([meta.spec(), LIFECYCLE], settings=token_settings(default_role))
        channel = aio.insecure_channel(server.address)
        channels.append(channel)
        return Lifecycle(server, channel, meta, dsn)

    yield start
    for channel in channels:
        await channel.close()


@pytest.fixture
async def lifecycle(start_lifecycle: Callable[..., Awaitable[Lifecycle]]) -> Lifecycle:
    return await start_lifecycle()
