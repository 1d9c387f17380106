"""The metadata service's composition root: stores, peers, domain services, servicers."""

from __future__ import annotations

from collections.abc import Sequence

from grpc import aio

from modelreg.metadata.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    experiment_service_pb2,
    experiment_service_pb2_grpc,
    lineage_service_pb2,
    lineage_service_pb2_grpc,
    model_version_service_pb2,
    model_version_service_pb2_grpc,
    registered_model_service_pb2,
    registered_model_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from modelreg_common.server import ServiceRuntime, ServiceSpec
from modelreg_metadata.domain.access import AccessService
from modelreg_metadata.domain.experiments import ExperimentService
from modelreg_metadata.domain.lineage import LineageService
from modelreg_metadata.domain.model_versions import ModelVersionService
from modelreg_metadata.domain.ports import AccessChanged, ArtifactPort, LifecyclePort
from modelreg_metadata.domain.registered_models import RegisteredModelService
from modelreg_metadata.domain.runs import RunService
from modelreg_metadata.store import model_versions
from modelreg_metadata.store.peers import GrpcArtifacts, GrpcLifecycle
from modelreg_metadata.store.uow import PgUnitOfWork
from modelreg_metadata.transport.servicers import (
    AccessServicer,
    ExperimentServicer,
    LineageServicer,
    ModelVersionServicer,
    RegisteredModelServicer,
    RunServicer,
)

SERVICE_NAMES = (
    experiment_service_pb2.DESCRIPTOR.services_by_name["ExperimentService"].full_name,
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    registered_model_service_pb2.DESCRIPTOR.services_by_name["RegisteredModelService"].full_name,
    model_version_service_pb2.DESCRIPTOR.services_by_name["ModelVersionService"].full_name,
    lineage_service_pb2.DESCRIPTOR.services_by_name["LineageService"].full_name,
    access_service_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
)


class MetadataComponent:
    def __init__(
        self,
        uow: PgUnitOfWork,
        artifacts: ArtifactPort,
        lifecycle: LifecyclePort,
        on_access_changed: AccessChanged,
    ) -> None:
        self.experiments = ExperimentService(uow)
        self.runs = RunService(uow)
        self.models = RegisteredModelService(uow, lifecycle, on_access_changed)
        self.versions = ModelVersionService(uow, artifacts)
        self.lineage = LineageService(uow)
        self.access = AccessService(uow, on_access_changed)

    @property
    def service_names(self) -> Sequence[str]:
        return SERVICE_NAMES

    def register(self, server: aio.Server) -> None:
        experiment_service_pb2_grpc.add_ExperimentServiceServicer_to_server(
            ExperimentServicer(self.experiments), server
        )
        run_service_pb2_grpc.add_RunServiceServicer_to_server(RunServicer(self.runs), server)
        registered_model_service_pb2_grpc.add_RegisteredModelServiceServicer_to_server(
            RegisteredModelServicer(self.models), server
        )
        model_version_service_pb2_grpc.add_ModelVersionServiceServicer_to_server(
            ModelVersionServicer(self.versions), server
        )
        lineage_service_pb2_grpc.add_LineageServiceServicer_to_server(
            LineageServicer(self.lineage), server
        )
        access_service_pb2_grpc.add_AccessServiceServicer_to_server(
            AccessServicer(self.access), server
        )

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def create(runtime: ServiceRuntime) -> MetadataComponent:
    peers = runtime.peers
    return MetadataComponent(
        PgUnitOfWork(runtime.pool, runtime.page_tokens),
        GrpcArtifacts(lambda: peers.channel("artifact"), peers.timeout),
        GrpcLifecycle(lambda: peers.channel("lifecycle"), peers.timeout),
        # After a commit that changes grants or keys, this process forgets what it cached.
        runtime.authorizer.invalidate,
    )


SPEC = ServiceSpec(
    name="metadata",
    schema="metadata",
    migrations_package="modelreg_metadata.store.migrations",
    create=create,
    warm_statements=model_versions.WARM_STATEMENTS,
)
