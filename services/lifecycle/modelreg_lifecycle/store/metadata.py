"""The metadata service as the domain's VersionCatalog: gRPC stubs with a deadline on every
call and retries with backoff on UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import grpc
from grpc import aio

from modelreg.metadata.v1 import (
    lineage_pb2,
    lineage_service_pb2,
    lineage_service_pb2_grpc,
    model_version_pb2,
    model_version_service_pb2,
    model_version_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from modelreg_common.errors import NotFound, PermissionDenied, Unavailable
from modelreg_lifecycle.domain.models import Deployment, VersionInfo

T = TypeVar("T")

_STATES = {
    model_version_pb2.MODEL_VERSION_STATE_READY: "READY",
    model_version_pb2.MODEL_VERSION_STATE_PENDING_REGISTRATION: "PENDING_REGISTRATION",
    model_version_pb2.MODEL_VERSION_STATE_FAILED_REGISTRATION: "FAILED_REGISTRATION",
}


def version_info(version: model_version_pb2.ModelVersion) -> VersionInfo:
    model, _, number = version.name.removeprefix("models/").partition("/versions/")
    signature = version.signature
    return VersionInfo(
        name=version.name,
        model=model,
        version=int(number) if number.isdigit() else int(version.version),
        state=_STATES.get(version.state, "UNSPECIFIED"),
        run=version.run,
        tags=dict(version.tags),
        has_signature=version.HasField("signature")
        and bool(len(signature.inputs) or len(signature.outputs)),
        record=version.SerializeToString(),
    )


class _Stubs:
    def __init__(self, channel: aio.Channel) -> None:
        self.versions = model_version_service_pb2_grpc.ModelVersionServiceStub(channel)
        self.runs = run_service_pb2_grpc.RunServiceStub(channel)
        self.lineage = lineage_service_pb2_grpc.LineageServiceStub(channel)


class MetadataCatalog:
    def __init__(
        self,
        channel: Callable[[], aio.Channel],
        *,
        timeout: float,
        attempts: int = 4,
        backoff: float = 0.05,
    ) -> None:
        # The channel is made on first use: in the all-in-one server the peer is this process,
        # whose port is only known once the server has started.
        self._channel = channel
        self._stubs: _Stubs | None = None
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff

    @property
    def stubs(self) -> _Stubs:
        if self._stubs is None:
            self._stubs = _Stubs(self._channel())
        return self._stubs

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                return await call()
            except aio.AioRpcError as err:
                code = err.code()
                if code == grpc.StatusCode.NOT_FOUND:
                    raise NotFound(
                        what, kind="model version" if "/versions/" in what else "run"
                    ) from None
                if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    raise PermissionDenied(
                        f"the metadata service refused lifecycle's call for {what}: "
                        f"{err.details()}",
                        resource=what,
                    ) from err
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self._attempts:
                    await asyncio.sleep(delay)
                    delay *= 4
                    continue
                raise Unavailable(
                    f"metadata service call for {what} failed: {code.name} {err.details()}",
                    backend="metadata",
                ) from err
        raise AssertionError("unreachable")

    async def get_version(self, name: str) -> VersionInfo:
        request = model_version_service_pb2.GetModelVersionRequest(name=name)
        response = await self._call(
            name,
            lambda: self.stubs.versions.GetModelVersion(request, timeout=self._timeout),
        )
        return version_info(response.model_version)

    async def get_run_metrics(self, run: str) -> Mapping[str, float]:
        request = run_service_pb2.GetRunRequest(name=run)
        response = await self._call(
            run,
            lambda: self.stubs.runs.GetRun(request, timeout=self._timeout),
        )
        return dict(response.run.latest_metrics)

    async def record_deployment(self, deployment: Deployment) -> str:
        node = f"deployments/{deployment.id}"
        request = lineage_service_pb2.CreateLineageEdgesRequest(
            nodes=[
                lineage_pb2.LineageNode(
                    name=node,
                    type=lineage_pb2.LINEAGE_NODE_TYPE_DEPLOYMENT,
                    display_name=f"{deployment.environment} {deployment.endpoint}"[:200],
                    properties={
                        "deployment": deployment.name,
                        "environment": deployment.environment,
                        "endpoint": deployment.endpoint,
                        "status": deployment.status.value,
                    },
                )
            ],
            edges=[
                lineage_pb2.LineageEdge(
                    source=deployment.version_name,
                    target=node,
                    type=lineage_pb2.LINEAGE_EDGE_TYPE_DEPLOYED_AS,
                )
            ],
        )
        await self._call(
            deployment.version_name,
            lambda: self.stubs.lineage.CreateLineageEdges(request, timeout=self._timeout),
        )
        return node
