"""Composition root of the lifecycle service."""

from __future__ import annotations

from collections.abc import Sequence

from grpc import aio

from modelreg.lifecycle.v1 import (
    alias_service_pb2_grpc,
    deployment_service_pb2_grpc,
    policy_service_pb2_grpc,
    production_metric_service_pb2_grpc,
    stage_service_pb2_grpc,
    transition_request_service_pb2_grpc,
)
from modelreg_common.server import ServiceRuntime, ServiceSpec
from modelreg_lifecycle.domain.service import LifecycleService, StageConfig
from modelreg_lifecycle.settings import LifecycleSettings
from modelreg_lifecycle.store.metadata import MetadataCatalog
from modelreg_lifecycle.store.postgres import PgStore
from modelreg_lifecycle.store.roles import CallerRoles
from modelreg_lifecycle.transport import servicers

SCHEMA = "lifecycle"


class LifecycleComponent:
    def __init__(self, service: LifecycleService, runtime: ServiceRuntime) -> None:
        self.service = service
        self._runtime = runtime

    @property
    def service_names(self) -> Sequence[str]:
        return servicers.SERVICE_NAMES

    def register(self, server: aio.Server) -> None:
        tokens = self._runtime.page_tokens
        alias_service_pb2_grpc.add_AliasServiceServicer_to_server(
            servicers.AliasServicer(self.service, tokens, self._runtime.usage), server
        )
        stage_service_pb2_grpc.add_StageServiceServicer_to_server(
            servicers.StageServicer(self.service, tokens), server
        )
        policy_service_pb2_grpc.add_PolicyServiceServicer_to_server(
            servicers.PolicyServicer(self.service), server
        )
        transition_request_service_pb2_grpc.add_TransitionRequestServiceServicer_to_server(
            servicers.TransitionRequestServicer(self.service, tokens), server
        )
        deployment_service_pb2_grpc.add_DeploymentServiceServicer_to_server(
            servicers.DeploymentServicer(self.service, tokens), server
        )
        production_metric_service_pb2_grpc.add_ProductionMetricServiceServicer_to_server(
            servicers.ProductionMetricServicer(self.service, tokens), server
        )

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def create(
    runtime: ServiceRuntime, settings: LifecycleSettings | None = None
) -> LifecycleComponent:
    config = settings or LifecycleSettings()
    catalog = MetadataCatalog(
        lambda: runtime.peers.channel("metadata"),
        timeout=runtime.peers.timeout,
        attempts=config.metadata_attempts,
        backoff=config.metadata_backoff_seconds,
    )
    service = LifecycleService(
        PgStore(runtime.pool),
        catalog,
        CallerRoles(),
        StageConfig(config.stages, config.archive_stage),
    )
    return LifecycleComponent(service, runtime)


SPEC = ServiceSpec(
    name="lifecycle",
    schema=SCHEMA,
    migrations_package="modelreg_lifecycle.store.migrations",
    create=create,
)
